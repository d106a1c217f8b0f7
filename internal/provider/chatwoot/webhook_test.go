package chatwoot_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/chatwoot"
	"github.com/lullhq/lull/internal/provider/providertest"
)

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	const secret = "chatwoot-secret"
	body := providertest.Fixture(t, "incoming_text.json")
	now := providertest.Received
	ts := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	w := chatwoot.New(secret)
	for _, tt := range []struct {
		name, sig, ts string
		body          []byte
		ok            bool
	}{
		{"valid", chatwoot.Sign(secret, ts(0), body), ts(0), body, true},
		{"4 minutes old", chatwoot.Sign(secret, ts(-4*time.Minute), body), ts(-4 * time.Minute), body, true},
		{"6 minutes old", chatwoot.Sign(secret, ts(-6*time.Minute), body), ts(-6 * time.Minute), body, false},
		{"6 minutes ahead", chatwoot.Sign(secret, ts(6*time.Minute), body), ts(6 * time.Minute), body, false},
		{"timestamp changed", chatwoot.Sign(secret, ts(0), body), ts(-time.Second), body, false},
		{"body changed", chatwoot.Sign(secret, ts(0), body), ts(0), append([]byte(" "), body...), false},
		{"other secret", chatwoot.Sign("other", ts(0), body), ts(0), body, false},
		{"no signature", "", ts(0), body, false},
		{"no timestamp", chatwoot.Sign(secret, "", body), "", body, false},
		{"signed over the body alone", signBodyOnly(secret, body), ts(0), body, false},
	} {
		h := http.Header{}
		h.Set(chatwoot.SignatureHeader, tt.sig)
		h.Set(chatwoot.TimestampHeader, tt.ts)
		err := w.Authenticate(provider.Request{Body: tt.body, Header: h.Get, Now: now})
		providertest.RequireVerdict(t, tt.name, err, tt.ok, provider.ErrUnauthorized)
	}
	require.NotEmpty(t, chatwoot.New("").Info().Disabled, "no secret: 503")
}
