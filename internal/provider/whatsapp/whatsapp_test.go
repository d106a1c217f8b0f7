package whatsapp_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/whatsapp"
)

// TestParse_Fixtures pins the exact normalized output of every fixture (one
// per message type and event kind) in testdata/golden.
func TestParse_Fixtures(t *testing.T) {
	t.Parallel()
	providertest.GoldenFixtures(t, "*.json", whatsapp.Parse)
}

// The documented batched fixture: both messages, keyed by the business
// number id and the user's business-scoped id, deduped by wamid.
func TestParse_DocBatchTextAndVoice(t *testing.T) {
	t.Parallel()
	res := providertest.ParseFixture(t, "doc_batch_text_voice.json", whatsapp.Parse)
	require.Len(t, res.Envelopes, 2)
	text, voice := res.Envelopes[0], res.Envelopes[1]

	require.Equal(t, "200000000000002:BR.100000000000000001", text.Key)
	require.Equal(t, ingest.KindMessage, text.Kind)
	require.Equal(t, batch.Message{
		ID: "wamid.TEST000000000001", Text: "oi, tudo bem?", Type: batch.TypeText,
		ReceivedAt: "2026-11-25T20:00:00.123Z", Timestamp: "2023-11-14T22:13:20.000Z",
		Source: "whatsapp", From: "5511900000001", To: "200000000000002",
		Metadata: json.RawMessage(`{"display_phone_number":"15550001111","profile_name":"Cliente Teste","user_id":"BR.100000000000000001"}`),
	}, text.Message)

	require.Equal(t, text.Key, voice.Key)
	require.Equal(t, "wamid.TEST000000000002", voice.Message.ID)
	require.Equal(t, batch.TypeAudio, voice.Message.Type)
	require.Equal(t, "2023-11-14T22:13:23.000Z", voice.Message.Timestamp)
	require.Equal(t, &batch.Media{
		ID: "300000000000003", URL: "https://media.example.invalid/300000000000003",
		MimeType: "audio/ogg; codecs=opus", SHA256: "SHA256_PLACEHOLDER", Voice: true,
	}, voice.Message.Media)
}

func TestParse_KeysAndIgnored(t *testing.T) {
	t.Parallel()
	fx := providertest.Fixtures(t, "*.json")
	tests := []struct {
		fixture string
		keys    []string
		types   []string
		ignored map[string]int
	}{
		{"statuses", nil, nil, map[string]int{"status": 2}},
		{"multi_entry", []string{"200000000000002:5511900000001", "200000000000002:5511900000002"},
			[]string{batch.TypeText, batch.TypeText}, map[string]int{"status": 1}},
		{"group", []string{"200000000000002:GROUP_ID_PLACEHOLDER"}, []string{batch.TypeText}, nil},
		{"username_user", []string{"200000000000002:US.13491208655302741918"}, []string{batch.TypeText}, nil},
		{"invalid_message", []string{"200000000000002:5511900000001"}, []string{batch.TypeText}, map[string]int{"invalid": 1}},
		{"other_field", nil, nil, map[string]int{"field:account_update": 1}},
		{"not_whatsapp", nil, nil, map[string]int{"object": 1}},
		{"unsupported", []string{"200000000000002:5511900000001"}, []string{batch.TypeUnsupported}, nil},
		{"button", []string{"200000000000002:5511900000001"}, []string{batch.TypeInteractive}, nil},
	}
	for _, tt := range tests {
		res, err := whatsapp.Parse(fx[tt.fixture], providertest.Received)
		require.NoError(t, err, tt.fixture)
		var keys, types []string
		for _, e := range res.Envelopes {
			keys = append(keys, e.Key)
			types = append(types, e.Message.Type)
		}
		require.Equal(t, tt.keys, keys, tt.fixture)
		require.Equal(t, tt.types, types, tt.fixture)
		require.Equal(t, tt.ignored, res.Ignored, tt.fixture)
	}
}

func TestParse_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		malformed bool   // 400
		field     string // 422
	}{
		{"not JSON", `{"object":`, true, ""},
		{"empty", ``, true, ""},
		{"an array", `[]`, true, ""},
		{"not UTF-8", "{\"object\":\"\xff\"}", true, ""},
		{"trailing garbage", `{"object":"whatsapp_business_account"} x`, true, ""},
		{"entry not an array", `{"object":"whatsapp_business_account","entry":{}}`, false, "body.entry"},
		{"changes not an array", `{"object":"whatsapp_business_account","entry":[{"changes":"x"}]}`, false, "body.entry.changes"},
	}
	for _, tt := range tests {
		res, err := whatsapp.Parse([]byte(tt.body), providertest.Received)
		providertest.RequireRejected(t, tt.name, res, err, tt.malformed, tt.field)
	}
}

// A message Meta could never have sent is skipped, not the whole batch.
func TestParse_BadMessagesAreSkipped(t *testing.T) {
	t.Parallel()
	value := func(msgs string) []byte {
		return []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P"},"messages":[` + msgs + `,{"from":"1","id":"ok","type":"text","text":{"body":"b"}}]}}]}]}`)
	}
	for name, msg := range map[string]string{
		"no id":            `{"from":"1","type":"text","text":{"body":"b"}}`,
		"no sender":        `{"id":"x","type":"text","text":{"body":"b"}}`,
		"id with newline":  `{"from":"1","id":"a\nb","type":"text"}`,
		"bad timestamp":    `{"from":"1","id":"x","timestamp":"yesterday","type":"text"}`,
		"wrong shape":      `{"from":"1","id":"x","type":"text","text":"b"}`,
		"not an object":    `"x"`,
		"latitude is text": `{"from":"1","id":"x","type":"location","location":{"latitude":"north"}}`,
	} {
		res, err := whatsapp.Parse(value(msg), providertest.Received)
		require.NoError(t, err, name)
		require.Len(t, res.Envelopes, 1, name)
		require.Equal(t, "ok", res.Envelopes[0].Message.ID, name)
		require.Equal(t, map[string]int{"invalid": 1}, res.Ignored, name)
		require.Len(t, res.Problems, 1, name)
	}
}
