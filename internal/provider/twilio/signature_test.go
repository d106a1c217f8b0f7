package twilio_test

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/twilio"
)

// webhook-formats.md §3.5: verified there with twilio-python's
// RequestValidator, recomputed here with Python's hmac.
const (
	docURL       = "https://bot.example.com/webhooks/twilio"
	docToken     = "test_auth_token"
	docSignature = "fahqpY952k+OkfmTjYB/YoJsQUY="
)

func TestSignature_DocumentedVector(t *testing.T) {
	t.Parallel()
	params := form(t, providertest.Fixtures(t, "text_doc.txt")["text_doc"])
	require.Equal(t, docSignature, twilio.Signature(docToken, docURL, params))
}

func TestVerify(t *testing.T) {
	t.Parallel()
	params := form(t, providertest.Fixtures(t, "text_doc.txt")["text_doc"])
	withExtra := url.Values{}
	for k, v := range params {
		withExtra[k] = v
	}
	withExtra.Set("Extra", "1")
	multi := url.Values{"b": {"2", "1"}, "a": {"x"}}
	tests := []struct {
		name   string
		token  string
		url    string
		params url.Values
		sig    string
		ok     bool
	}{
		{"documented vector", docToken, docURL, params, docSignature, true},
		{"explicit :443 still verifies", docToken, "https://bot.example.com:443/webhooks/twilio", params, docSignature, true},
		{"signed with a port, requested without", docToken, docURL, params,
			twilio.Signature(docToken, "https://bot.example.com:443/webhooks/twilio", params), true},
		{"repeated parameters, values sorted", docToken, "http://h/p", multi, twilio.Signature(docToken, "http://h/paxb1b2", nil), true},
		{"wrong token", "other", docURL, params, docSignature, false},
		{"other path", docToken, "https://bot.example.com/webhook/twilio", params, docSignature, false},
		{"query matters", docToken, docURL + "?x=1", params, docSignature, false},
		{"scheme matters", docToken, "http://bot.example.com/webhooks/twilio", params, docSignature, false},
		{"a parameter added", docToken, docURL, withExtra, docSignature, false},
		{"missing signature", docToken, docURL, params, "", false},
		{"garbage signature", docToken, docURL, params, "not base64!", false},
		{"no token configured", "", docURL, params, twilio.Signature("", docURL, params), false},
	}
	for _, tt := range tests {
		err := twilio.Verify(tt.token, tt.url, tt.params, tt.sig)
		if tt.ok {
			require.NoError(t, err, tt.name)
		} else {
			require.ErrorIs(t, err, twilio.ErrSignature, tt.name)
		}
	}
}
