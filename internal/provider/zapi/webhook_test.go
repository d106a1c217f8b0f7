package zapi_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/zapi"
)

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	const token = "zapi-token-0123456789"
	w := zapi.New(token)
	for _, tt := range []struct {
		name, suffix, header, value string
		ok                          bool
	}{
		{"path", "/" + token, "", "", true},
		{"path with more segments", "/" + token + "/received", "", "", true},
		{"z-api-token header", "", "z-api-token", token, true},
		{"lull header", "", "X-Lull-Token", token, true},
		{"missing", "", "", "", false},
		{"wrong path", "/nope", "", "", false},
		{"wrong header", "", "Z-Api-Token", token + "x", false},
		{"token as a later segment", "/x/" + token, "", "", false},
	} {
		h := http.Header{}
		if tt.header != "" {
			h.Set(tt.header, tt.value)
		}
		err := w.Authenticate(provider.Request{Suffix: tt.suffix, Header: h.Get, Now: providertest.Received})
		providertest.RequireVerdict(t, tt.name, err, tt.ok, provider.ErrUnauthorized)
	}
	require.NotEmpty(t, zapi.New("").Info().Disabled, "no token: 503")
	require.Error(t, zapi.New("").Authenticate(provider.Request{Suffix: "/", Header: http.Header{}.Get}))
}
