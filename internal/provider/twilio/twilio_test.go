package twilio_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/twilio"
)

func form(t *testing.T, body []byte) url.Values {
	t.Helper()
	v, err := url.ParseQuery(string(body))
	require.NoError(t, err)
	return v
}

// parseForm parses body as the form it is, then as Twilio's.
func parseForm(body []byte, receivedAt time.Time) (provider.Result, error) {
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return provider.Result{}, err
	}
	return twilio.Parse(v, receivedAt)
}

// TestParse_Fixtures pins the exact normalized output of every fixture (one
// per message type) in testdata/golden.
func TestParse_Fixtures(t *testing.T) {
	t.Parallel()
	providertest.GoldenFixtures(t, "*.txt", parseForm)
}

// The documented fixture (Twilio's documented example request), field by field.
func TestParse_DocText(t *testing.T) {
	t.Parallel()
	res := providertest.ParseFixture(t, "text_doc.txt", parseForm)
	require.Equal(t, []ingest.Envelope{{Key: "whatsapp:+15550001111:whatsapp:+5511900000001", Message: batch.Message{
		ID: "SM00000000000000000000000000000001", Text: "oi, tudo bem?", Type: batch.TypeText,
		ReceivedAt: "2026-11-25T20:00:00.123Z", Source: "twilio",
		From: "whatsapp:+5511900000001", To: "whatsapp:+15550001111",
		Metadata: json.RawMessage(`{"account_sid":"AC00000000000000000000000000000001","message_type":"text","profile_name":"Cliente Teste","wa_id":"5511900000001"}`),
	}}}, res.Envelopes)
}

func TestParse_Types(t *testing.T) {
	t.Parallel()
	fx := providertest.Fixtures(t, "*.txt")
	for name, want := range map[string]string{
		"image": batch.TypeImage, "audio_voice": batch.TypeAudio, "video": batch.TypeVideo,
		"document": batch.TypeDocument, "sticker": batch.TypeSticker, "location": batch.TypeLocation,
		"contacts": batch.TypeContacts, "button": batch.TypeInteractive, "reply": batch.TypeText,
		"media_no_message_type": batch.TypeImage, "mms_two_media": batch.TypeImage,
		"unknown_type": batch.TypeUnsupported, "sms": batch.TypeText,
	} {
		res, err := twilio.Parse(form(t, fx[name]), providertest.Received)
		require.NoError(t, err, name)
		require.Len(t, res.Envelopes, 1, name)
		require.Equal(t, want, res.Envelopes[0].Message.Type, name)
	}
}

func TestParse_Invalid(t *testing.T) {
	t.Parallel()
	ok := "MessageSid=SM1&From=whatsapp%3A%2B1&To=whatsapp%3A%2B2&Body=x"
	tests := []struct {
		name      string
		body      string
		malformed bool
		field     string
	}{
		{"no MessageSid", "From=a&To=b&Body=x", false, "MessageSid"},
		{"no From", "MessageSid=SM1&To=b&Body=x", false, "From"},
		{"no To", "MessageSid=SM1&From=a&Body=x", false, "To"},
		{"NumMedia not a number", ok + "&NumMedia=many", false, "NumMedia"},
		{"negative NumMedia", ok + "&NumMedia=-1", false, "NumMedia"},
		{"Latitude not a number", ok + "&Latitude=north&Longitude=1", false, "Latitude"},
		{"Latitude NaN", ok + "&Latitude=NaN&Longitude=1", false, "Latitude"},
		{"control char in From", "MessageSid=SM1&From=a%0Ab&To=b", false, "To"},
		{"MessageSid too long", "From=a&To=b&MessageSid=" + string(make([]byte, 300)), false, "MessageSid"},
		{"not UTF-8", ok + "&ProfileName=%FF", true, ""},
	}
	for _, tt := range tests {
		f, err := url.ParseQuery(tt.body)
		require.NoError(t, err, tt.name)
		res, err := twilio.Parse(f, providertest.Received)
		providertest.RequireRejected(t, tt.name, res, err, tt.malformed, tt.field)
	}
}

func TestParse_StatusCallbackIsIgnored(t *testing.T) {
	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}, "SmsStatus": {"delivered"},
		"From": {"whatsapp:+15550001111"}, "To": {"whatsapp:+5511900000001"}}
	res, err := twilio.Parse(form, time.Now())
	require.NoError(t, err)
	require.Empty(t, res.Envelopes, "a status callback is no user message")
	require.Equal(t, 1, res.Ignored["status"])
}
