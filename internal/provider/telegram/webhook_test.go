package telegram_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/telegram"
)

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	w := telegram.New("s3cret_Token-1")
	for _, tt := range []struct {
		name, header string
		ok           bool
	}{
		{"valid", "s3cret_Token-1", true},
		{"missing", "", false},
		{"wrong", "s3cret_Token-2", false},
		{"prefix", "s3cret", false},
	} {
		h := http.Header{}
		if tt.header != "" {
			h.Set(telegram.SecretHeader, tt.header)
		}
		err := w.Authenticate(provider.Request{Header: h.Get, Now: providertest.Received})
		providertest.RequireVerdict(t, tt.name, err, tt.ok, provider.ErrUnauthorized)
	}
	require.Empty(t, w.Info().Disabled)
	require.NotEmpty(t, telegram.New("").Info().Disabled, "no secret: 503")
	require.Error(t, telegram.New("").Authenticate(provider.Request{Header: http.Header{}.Get}))
}
