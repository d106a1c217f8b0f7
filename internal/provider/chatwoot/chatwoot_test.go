package chatwoot_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider/chatwoot"
	"github.com/lullhq/lull/internal/provider/providertest"
)

func TestParse_Fixtures(t *testing.T) {
	t.Parallel()
	providertest.GoldenFixtures(t, "*.json", chatwoot.Parse)
}

func TestParse_KindsTypesAndIgnored(t *testing.T) {
	t.Parallel()
	fx := providertest.Fixtures(t, "*.json")
	tests := []struct {
		fixture, key, kind, typ string
		ignored                 map[string]int
	}{
		{"incoming_text", "1:1234", ingest.KindMessage, batch.TypeText, nil},
		{"incoming_image", "1:1234", ingest.KindMessage, batch.TypeImage, nil},
		{"incoming_audio", "1:1234", ingest.KindMessage, batch.TypeAudio, nil},
		{"incoming_file", "1:1234", ingest.KindMessage, batch.TypeDocument, nil},
		{"incoming_location", "1:1234", ingest.KindMessage, batch.TypeLocation, nil},
		{"incoming_input_select", "1:1234", ingest.KindMessage, batch.TypeInteractive, nil},
		{"incoming_reply", "1:1234", ingest.KindMessage, batch.TypeText, nil},
		{"status_open", "1:1234", ingest.KindPause, "", nil},
		{"status_pending", "1:1234", ingest.KindResume, "", nil},
		{"outgoing", "", "", "", map[string]int{"message_type:outgoing": 1}},
		{"template", "", "", "", map[string]int{"message_type:template": 1}},
		{"private_note", "", "", "", map[string]int{"private": 1}},
		{"status_resolved", "", "", "", map[string]int{"status:resolved": 1}},
		{"other_event", "", "", "", map[string]int{"event:conversation_created": 1}},
	}
	for _, tt := range tests {
		res, err := chatwoot.Parse(fx[tt.fixture], providertest.Received)
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

func TestParse_Details(t *testing.T) {
	t.Parallel()
	msg := func(f string) batch.Message {
		return providertest.ParseFixture(t, f, chatwoot.Parse).Envelopes[0].Message
	}
	text := msg("incoming_text.json")
	require.Equal(t, "5001", text.ID, "deduped on the message id")
	require.Equal(t, "42", text.From)
	require.Equal(t, "7", text.To)
	require.Equal(t, "2023-11-14T22:13:20.000Z", text.Timestamp)
	img := msg("incoming_image.json")
	require.Equal(t, &batch.Media{ID: "901", URL: "https://chatwoot.example.invalid/rails/active_storage/blobs/x/foto.jpg"}, img.Media)
	require.Contains(t, string(img.Metadata), `"extra_media"`)
	require.Equal(t, "4999", msg("incoming_reply.json").ReplyTo)
}

func TestParse_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		malformed bool
		field     string
	}{
		{"not JSON", `{"event":`, true, ""},
		{"no event", `{"id":1}`, false, "event"},
		{"no id", `{"event":"message_created","message_type":"incoming","content":"x","account":{"id":1},"conversation":{"id":2}}`, false, "id"},
		{"no account", `{"event":"message_created","id":1,"message_type":"incoming","content":"x","conversation":{"id":2}}`, false, "account.id"},
		{"no conversation", `{"event":"message_created","id":1,"message_type":"incoming","content":"x","account":{"id":1}}`, false, "conversation.id"},
		{"status without account", `{"event":"conversation_status_changed","id":2,"status":"open"}`, false, "account.id"},
		{"attachments not a list", `{"event":"message_created","id":1,"message_type":"incoming","attachments":{}}`, false, "body.attachments"},
	}
	for _, tt := range tests {
		res, err := chatwoot.Parse([]byte(tt.body), providertest.Received)
		providertest.RequireRejected(t, tt.name, res, err, tt.malformed, tt.field)
	}
}
