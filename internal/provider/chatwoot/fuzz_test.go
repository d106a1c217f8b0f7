package chatwoot_test

import (
	"testing"

	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/provider/chatwoot"
	"github.com/lullhq/lull/internal/provider/providertest"
)

func signBodyOnly(secret string, body []byte) string { return hmacsig.Sign(secret, body) }

func FuzzParseChatwoot(f *testing.F) {
	providertest.FuzzParse(f, "*.json", chatwoot.Parse,
		[]byte(`{"event":"conversation_status_changed","id":null,"status":"OPEN","conversation":{"id":1,"account_id":2,"status":"open"}}`))
}

func FuzzVerifySignatureChatwoot(f *testing.F) {
	now := providertest.Received
	f.Add([]byte(`{}`), "1795723200", "secret")
	f.Fuzz(func(t *testing.T, body []byte, ts, secret string) {
		sig := chatwoot.Sign(secret, ts, body)
		err := chatwoot.VerifySignature(body, sig, ts, secret, now)
		// Its own signature verifies unless the timestamp is not fresh
		// Unix seconds or there is no secret; a changed body never does.
		if err == nil && chatwoot.VerifySignature(append(body, 'x'), sig, ts, secret, now) == nil {
			t.Fatal("a changed body verified")
		}
	})
}
