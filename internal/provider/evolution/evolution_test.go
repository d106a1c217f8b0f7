package evolution_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider/evolution"
	"github.com/lullhq/lull/internal/provider/providertest"
)

// TestParse_Fixtures pins the exact normalized output of every fixture (one
// per message type and event kind) in testdata/golden.
func TestParse_Fixtures(t *testing.T) {
	t.Parallel()
	providertest.GoldenFixtures(t, "*.json", evolution.Parse)
}

// The documented messages.upsert fixture, field by field.
func TestParse_DocText(t *testing.T) {
	t.Parallel()
	res := providertest.ParseFixture(t, "text_conversation.json", evolution.Parse)
	require.Equal(t, []ingest.Envelope{{Key: "bot-01:5511900000001@s.whatsapp.net", Message: batch.Message{
		ID: "3EB0A1B2C3D4E5F6A7B8C9", Text: "oi, tudo bem?", Type: batch.TypeText,
		ReceivedAt: "2026-11-25T20:00:00.123Z", Timestamp: "2023-11-14T22:13:20.000Z",
		Source: "evolution", From: "5511900000001@s.whatsapp.net", To: "bot-01",
		Metadata: json.RawMessage(`{"device":"web","instance_id":"00000000-0000-0000-0000-000000000001","message_type":"conversation","push_name":"Cliente Teste"}`),
	}}}, res.Envelopes)
	require.Empty(t, res.Ignored)
}

func TestParse_KeysKindsAndIgnored(t *testing.T) {
	t.Parallel()
	fx := providertest.Fixtures(t, "*.json")
	tests := []struct {
		fixture string
		key     string // "" = nothing published
		kind    string
		typ     string
		ignored map[string]int
	}{
		{"presence_composing", "bot-01:5511900000001@s.whatsapp.net", ingest.KindTyping, "", nil},
		{"presence_recording", "bot-01:5511900000001@s.whatsapp.net", ingest.KindTyping, "", nil},
		{"presence_available", "", "", "", map[string]int{"presence:available": 1}},
		{"presence_group", "bot-01:120363000000000001@g.us", ingest.KindTyping, "", map[string]int{"presence:unavailable": 1}},
		{"group", "bot-01:120363000000000001@g.us", ingest.KindMessage, batch.TypeText, nil},
		{"group_lid", "bot-01:120363000000000001@g.us", ingest.KindMessage, batch.TypeText, nil},
		{"lid_addressing", "bot-01:5511900000001@s.whatsapp.net", ingest.KindMessage, batch.TypeText, nil},
		{"from_me", "", "", "", map[string]int{"from_me": 1}},
		{"status_broadcast", "", "", "", map[string]int{"broadcast": 1}},
		{"other_event", "", "", "", map[string]int{"event:connection.update": 1}},
		{"messages_update", "", "", "", map[string]int{"event:messages.update": 1}},
		{"event_upper_snake", "bot-01:5511900000001@s.whatsapp.net", ingest.KindMessage, batch.TypeText, nil},
		{"unsupported", "bot-01:5511900000001@s.whatsapp.net", ingest.KindMessage, batch.TypeUnsupported, nil},
	}
	for _, tt := range tests {
		res, err := evolution.Parse(fx[tt.fixture], providertest.Received)
		require.NoError(t, err, tt.fixture)
		require.Equal(t, tt.ignored, res.Ignored, tt.fixture)
		if tt.key == "" {
			require.Empty(t, res.Envelopes, tt.fixture)
			continue
		}
		require.Len(t, res.Envelopes, 1, tt.fixture)
		e := res.Envelopes[0]
		require.Equal(t, tt.key, e.Key, tt.fixture)
		require.Equal(t, tt.kind, e.Kind, tt.fixture)
		require.Equal(t, tt.typ, e.Message.Type, tt.fixture)
	}
}

func TestParse_Invalid(t *testing.T) {
	t.Parallel()
	upsert := func(data string) string {
		return `{"event":"messages.upsert","instance":"bot-01","data":` + data + `}`
	}
	tests := []struct {
		name      string
		body      string
		malformed bool   // 400
		field     string // 422
	}{
		{"not JSON", `{"event":`, true, ""},
		{"an array", `[]`, true, ""},
		{"not UTF-8", "{\"event\":\"\xff\"}", true, ""},
		{"no event", `{"instance":"bot-01","data":{}}`, false, "event"},
		{"no instance", `{"event":"messages.upsert","data":{}}`, false, "instance"},
		{"data not an object", `{"event":"messages.upsert","instance":"i","data":[]}`, false, "data"},
		{"no data", `{"event":"presence.update","instance":"i"}`, false, "data"},
		{"no key id", upsert(`{"key":{"remoteJid":"1@s.whatsapp.net"},"message":{"conversation":"x"}}`), false, "data.key.id"},
		{"no remoteJid", upsert(`{"key":{"id":"X"},"message":{"conversation":"x"}}`), false, "data.key.remoteJid"},
		{"id with a control char", upsert(`{"key":{"id":"a\u0000","remoteJid":"1@s.whatsapp.net"}}`), false, "data.key.id"},
		{"bad timestamp", upsert(`{"key":{"id":"X","remoteJid":"1@s.whatsapp.net"},"messageTimestamp":"soon"}`), false, "data.messageTimestamp"},
		{"fromMe not a bool", upsert(`{"key":{"id":"X","remoteJid":"1@s.whatsapp.net","fromMe":"no"}}`), false, "data.key.fromMe"},
		{"conversation not text", upsert(`{"key":{"id":"X","remoteJid":"1@s.whatsapp.net"},"message":{"conversation":1}}`), false, "data.message.conversation"},
		{"presences not a map", `{"event":"presence.update","instance":"i","data":{"id":"1@s.whatsapp.net","presences":[]}}`, false, "data.presences"},
	}
	for _, tt := range tests {
		res, err := evolution.Parse([]byte(tt.body), providertest.Received)
		providertest.RequireRejected(t, tt.name, res, err, tt.malformed, tt.field)
	}
}

func TestNormalizeEvent(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"messages.upsert": "messages.upsert", "MESSAGES_UPSERT": "messages.upsert",
		"PRESENCE_UPDATE": "presence.update", " presence.update ": "presence.update",
	} {
		require.Equal(t, want, evolution.NormalizeEvent(in), in)
	}
}
