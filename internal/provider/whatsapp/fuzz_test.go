package whatsapp_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/whatsapp"
)

func FuzzParseWhatsApp(f *testing.F) {
	providertest.FuzzParse(f, "*.json", whatsapp.Parse, []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":1},"messages":[{"from":2,"id":3,"timestamp":4,"type":"x"}]}}]}]}`))
}

func FuzzVerifySignature(f *testing.F) {
	doc := providertest.Fixture(f, "doc_batch_text_voice.json")
	f.Add(doc, "sha256=fc8df1f241b598c7b4bfc3ff8df84c07038ba087463cd586cab05dfa45797d14", "test_app_secret")
	f.Add([]byte("{}"), "sha256=", "")
	f.Fuzz(func(t *testing.T, body []byte, header, secret string) {
		if whatsapp.VerifySignature(body, header, secret) != nil {
			return
		}
		// Accepted: it must be the HMAC, whatever the spelling.
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		got, _ := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
		if secret == "" || !strings.EqualFold(got, hex.EncodeToString(mac.Sum(nil))) {
			t.Fatalf("accepted a signature that is not the body's HMAC: %q", header)
		}
	})
}
