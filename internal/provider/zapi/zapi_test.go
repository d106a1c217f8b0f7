package zapi_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/zapi"
)

func TestParse_Fixtures(t *testing.T) {
	t.Parallel()
	providertest.GoldenFixtures(t, "*.json", zapi.Parse)
}

func TestParse_KeysTypesAndIgnored(t *testing.T) {
	t.Parallel()
	fx := providertest.Fixtures(t, "*.json")
	const user = "INSTANCE_PLACEHOLDER:5511900000001"
	tests := []struct {
		fixture, key, kind, typ, from string
		ignored                       map[string]int
	}{
		{"doc_text", user, ingest.KindMessage, batch.TypeText, "5511900000001", nil},
		{"image", user, ingest.KindMessage, batch.TypeImage, "5511900000001", nil},
		{"audio_ptt", user, ingest.KindMessage, batch.TypeAudio, "5511900000001", nil},
		{"video", user, ingest.KindMessage, batch.TypeVideo, "5511900000001", nil},
		{"document", user, ingest.KindMessage, batch.TypeDocument, "5511900000001", nil},
		{"location", user, ingest.KindMessage, batch.TypeLocation, "5511900000001", nil},
		{"contact", user, ingest.KindMessage, batch.TypeContacts, "5511900000001", nil},
		{"sticker", user, ingest.KindMessage, batch.TypeSticker, "5511900000001", nil},
		{"reaction", user, ingest.KindMessage, batch.TypeReaction, "5511900000001", nil},
		{"buttons_response", user, ingest.KindMessage, batch.TypeInteractive, "5511900000001", nil},
		{"list_response", user, ingest.KindMessage, batch.TypeInteractive, "5511900000001", nil},
		{"reply", user, ingest.KindMessage, batch.TypeText, "5511900000001", nil},
		{"poll", user, ingest.KindMessage, batch.TypeUnsupported, "5511900000001", nil},
		{"unknown_kind", user, ingest.KindMessage, batch.TypeUnsupported, "5511900000001", nil},
		{"group", "INSTANCE_PLACEHOLDER:120363000000000001-group", ingest.KindMessage, batch.TypeText, "5511900000002", nil},
		{"presence_composing", user, ingest.KindTyping, "", "5511900000001", nil},
		{"presence_recording", user, ingest.KindTyping, "", "5511900000001", nil},
		{"presence_paused", "", "", "", "", map[string]int{"presence:paused": 1}},
		{"from_me", "", "", "", "", map[string]int{"from_me": 1}},
		{"status_callback", "", "", "", "", map[string]int{"type:MessageStatusCallback": 1}},
	}
	for _, tt := range tests {
		res, err := zapi.Parse(fx[tt.fixture], providertest.Received)
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
		require.Equal(t, tt.from, e.Message.From, tt.fixture)
	}
}

func TestParse_Details(t *testing.T) {
	t.Parallel()
	msg := func(f string) batch.Message {
		return providertest.ParseFixture(t, f, zapi.Parse).Envelopes[0].Message
	}
	doc := msg("doc_text.json")
	require.Equal(t, "3EB0A1B2C3D4E5F6A7B8C9", doc.ID)
	require.Equal(t, "2023-11-14T22:13:20.000Z", doc.Timestamp, "momment is in milliseconds")
	require.Equal(t, "oi, tudo bem?", doc.Text)
	require.True(t, msg("audio_ptt.json").Media.Voice)
	require.Equal(t, "3EB0OUT01", msg("reply.json").ReplyTo)
	require.Equal(t, "3EB0OUT01", msg("reaction.json").ReplyTo)
	require.Equal(t, "Plano básico", msg("list_response.json").Text)
	require.Contains(t, string(msg("unknown_kind.json").Metadata), `"raw_type":"brandNewThing"`)
}

func TestParse_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		malformed bool
		field     string
	}{
		{"not JSON", `{"type":`, true, ""},
		{"no type", `{"phone":"1"}`, false, "type"},
		{"no message id", `{"type":"ReceivedCallback","instanceId":"I","phone":"1","text":{"message":"x"}}`, false, "messageId"},
		{"no phone", `{"type":"ReceivedCallback","instanceId":"I","messageId":"m","text":{"message":"x"}}`, false, "instanceId"},
		{"bad momment", `{"type":"ReceivedCallback","instanceId":"I","phone":"1","messageId":"m","momment":"x"}`, false, "momment"},
		{"text of the wrong shape", `{"type":"ReceivedCallback","instanceId":"I","phone":"1","messageId":"m","text":{"message":1}}`, false, "text.message"},
	}
	for _, tt := range tests {
		res, err := zapi.Parse([]byte(tt.body), providertest.Received)
		providertest.RequireRejected(t, tt.name, res, err, tt.malformed, tt.field)
	}
}
