package twilio_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/twilio"
)

// FuzzParseTwilio feeds raw form bodies through the same parsing the
// handler does.
func FuzzParseTwilio(f *testing.F) {
	providertest.FuzzParse(f, "*.txt", func(body []byte, receivedAt time.Time) (provider.Result, error) {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return provider.Result{}, nil // answered 400 before Parse: nothing to check
		}
		return twilio.Parse(form, receivedAt)
	}, []byte("MessageSid=1&From=a&To=b&NumMedia=99999999999&MediaUrl0=x&Latitude=1e400"))
}

func FuzzVerifyTwilio(f *testing.F) {
	f.Add("test_auth_token", "https://bot.example.com/webhooks/twilio", "Body=x", "fahqpY952k+OkfmTjYB/YoJsQUY=")
	f.Add("t", "http://[::1]/p?q#f", "a=1&a=2", "")
	f.Fuzz(func(t *testing.T, token, u, body, sig string) {
		params, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		if twilio.Verify(token, u, params, sig) == nil && token == "" {
			t.Fatal("verified without a token")
		}
		if token != "" && twilio.Verify(token, u, params, twilio.Signature(token, u, params)) != nil {
			t.Fatal("its own signature does not verify")
		}
	})
}
