package waha_test

import (
	"strings"
	"testing"

	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/waha"
)

func FuzzParseWAHA(f *testing.F) {
	providertest.FuzzParse(f, "*.json", waha.Parse,
		[]byte(`{"event":"presence.update","session":1,"payload":{"id":2,"presences":[{"participant":null,"lastKnownPresence":"typing"}]}}`))
}

func FuzzVerifySignatureWAHA(f *testing.F) {
	f.Add(providertest.Fixture(f, "doc_text.json"), docSignature, "test_waha_key")
	f.Add([]byte("{}"), "", "")
	f.Fuzz(func(t *testing.T, body []byte, header, key string) {
		if waha.VerifySignature(body, header, "", key) != nil {
			return
		}
		if !equalFoldHex(strings.TrimSpace(header), waha.Sign(key, body)) {
			t.Fatalf("accepted a signature that is not the body's HMAC: %q", header)
		}
	})
}

func equalFoldHex(a, b string) bool {
	if len(a) < len(b) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'F' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return len(a) == len(b)
}
