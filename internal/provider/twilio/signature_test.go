package twilio_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/twilio"
)

// Twilio's documented example request: verified with twilio-python's
// RequestValidator, recomputed here with Python's hmac.
const (
	docURL       = "https://bot.example.com/webhooks/twilio"
	docToken     = "test_auth_token"
	docSignature = "fahqpY952k+OkfmTjYB/YoJsQUY="
)

func TestSignature_DocumentedVector(t *testing.T) {
	t.Parallel()
	params := form(t, providertest.Fixture(t, "text_doc.txt"))
	require.Equal(t, docSignature, twilio.Signature(docToken, docURL, params))
}

func TestVerify(t *testing.T) {
	t.Parallel()
	params := form(t, providertest.Fixture(t, "text_doc.txt"))
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
		providertest.RequireVerdict(t, tt.name, err, tt.ok, twilio.ErrSignature)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	body := providertest.Fixture(t, "text_doc.txt")
	params := form(t, body)

	got, err := twilio.Authenticate(docToken, docURL, body, docSignature)
	require.NoError(t, err)
	require.Equal(t, params, got)
	got, err = twilio.Authenticate(docToken, "https://bot.example.com:443/webhooks/twilio", body, docSignature)
	require.NoError(t, err, "explicit default port")
	require.Equal(t, params, got)

	bad := []byte("a=%zz&Body=x")
	partial := url.Values{"Body": {"x"}}
	tests := []struct {
		name  string
		token string
		body  []byte
		sig   string
		want  error
	}{
		{"no token", "", body, docSignature, twilio.ErrSignature},
		{"no signature", docToken, body, "", twilio.ErrSignature},
		{"wrong signature", docToken, body, twilio.Signature(docToken, docURL, partial), twilio.ErrSignature},
		{"signature too short", docToken, body, docSignature[:27], twilio.ErrSignature},
		{"signature not base64", docToken, body, "!!!!!!!!!!!!!!!!!!!!!!!!!!!=", twilio.ErrSignature},
		{"bad encoding, wrong signature", docToken, bad, docSignature, twilio.ErrSignature},
		{"bad encoding, signed over what decodes", docToken, bad, twilio.Signature(docToken, docURL, partial), twilio.ErrForm},
	}
	for _, tt := range tests {
		got, err := twilio.Authenticate(tt.token, docURL, tt.body, tt.sig)
		require.ErrorIs(t, err, tt.want, tt.name)
		require.Nil(t, got, "%s: nothing of the body is handed out", tt.name)
	}
}

// A request that cannot be Twilio's is refused without decoding its body:
// a handful of allocations, whatever the body's size.
func TestAuthenticate_RefusesBeforeDecoding(t *testing.T) {
	bigBody := []byte("Body=" + strings.Repeat("%41", 1<<18))      // 768 KiB, one parameter
	manyParams := []byte(strings.Repeat("a=1&", twilio.MaxParams)) // one more than MaxParams
	for _, tt := range []struct {
		name string
		body []byte
		sig  string
	}{
		{"no signature, big body", bigBody, ""},
		{"malformed signature, big body", bigBody, "nope"},
		{"too many parameters, well-formed signature", manyParams, docSignature},
	} {
		var err error
		allocs := testing.AllocsPerRun(5, func() {
			_, err = twilio.Authenticate(docToken, docURL, tt.body, tt.sig)
		})
		require.ErrorIs(t, err, twilio.ErrSignature, tt.name)
		require.LessOrEqual(t, allocs, 10.0, "%s: refused before decoding", tt.name)
	}
}
