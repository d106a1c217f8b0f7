package waha_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/waha"
)

func TestParse_Fixtures(t *testing.T) {
	t.Parallel()
	providertest.GoldenFixtures(t, "*.json", waha.Parse)
}

func TestParse_KeysTypesAndIgnored(t *testing.T) {
	t.Parallel()
	fx := providertest.Fixtures(t, "*.json")
	tests := []struct {
		fixture string
		key     string // "" = no envelope
		kind    string
		typ     string
		from    string
		ignored map[string]int
	}{
		{"doc_text", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeText, "5511900000001@c.us", nil},
		{"group", "default:120363000000000001@g.us", ingest.KindMessage, batch.TypeText, "5511900000002@c.us", nil},
		{"image", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeImage, "5511900000001@c.us", nil},
		{"voice", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeAudio, "5511900000001@c.us", nil},
		{"document", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeDocument, "5511900000001@c.us", nil},
		{"media_not_downloaded", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeUnsupported, "5511900000001@c.us", nil},
		{"reaction", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeReaction, "5511900000001@c.us", nil},
		{"location", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeLocation, "5511900000001@c.us", nil},
		{"vcard", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeContacts, "5511900000001@c.us", nil},
		{"any_incoming", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeText, "5511900000001@c.us", nil},
		{"empty_unknown", "default:5511900000001@c.us", ingest.KindMessage, batch.TypeUnsupported, "5511900000001@c.us", nil},
		{"any_from_me", "", "", "", "", map[string]int{"from_me": 1}},
		{"status_broadcast", "", "", "", "", map[string]int{"broadcast": 1}},
		{"other_event", "", "", "", "", map[string]int{"event:message.ack": 1}},
		{"presence_typing", "default:5511900000001@c.us", ingest.KindTyping, "", "5511900000001@c.us", nil},
		{"presence_group", "default:120363000000000001@g.us", ingest.KindTyping, "", "5511900000002@c.us", map[string]int{"presence:online": 1}},
		{"presence_paused", "", "", "", "", map[string]int{"presence:paused": 1}},
	}
	for _, tt := range tests {
		res, err := waha.Parse(fx[tt.fixture], providertest.Received)
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

// The documented message: deduped on the payload id, timestamped in seconds.
func TestParse_DocMessage(t *testing.T) {
	t.Parallel()
	res := providertest.ParseFixture(t, "doc_text.json", waha.Parse)
	require.Len(t, res.Envelopes, 1)
	m := res.Envelopes[0].Message
	require.Equal(t, "false_5511900000001@c.us_3EB0A1B2C3D4E5F6A7B8C9", m.ID)
	require.Equal(t, "oi, tudo bem?", m.Text)
	require.Equal(t, "2023-11-14T22:13:20.000Z", m.Timestamp)
	require.Equal(t, "waha", m.Source)
	require.Equal(t, "5511999990000@c.us", m.To)
}

func TestParse_RepliesReactionsAndMedia(t *testing.T) {
	t.Parallel()
	reply := providertest.ParseFixture(t, "reply.json", waha.Parse).Envelopes[0].Message
	require.Equal(t, "true_5511900000001@c.us_3EB0OUT01", reply.ReplyTo)

	react := providertest.ParseFixture(t, "reaction.json", waha.Parse).Envelopes[0].Message
	require.Equal(t, "👍", react.Text)
	require.Equal(t, "true_5511900000001@c.us_3EB0OUT01", react.ReplyTo)
	removed := providertest.ParseFixture(t, "reaction_removed.json", waha.Parse).Envelopes[0].Message
	require.Empty(t, removed.Text)
	require.JSONEq(t, `{"removed":true,"session":"default","engine":"WEBJS"}`, string(removed.Metadata))

	voice := providertest.ParseFixture(t, "voice.json", waha.Parse).Envelopes[0].Message
	require.Equal(t, &batch.Media{URL: "http://waha.example.invalid/api/files/default/3EB0VOICE01.oga", MimeType: "audio/ogg; codecs=opus", Voice: true}, voice.Media)
	doc := providertest.ParseFixture(t, "document.json", waha.Parse).Envelopes[0].Message
	require.Equal(t, "boleto.pdf", doc.Media.Filename)
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
		{"an array", `[]`, true, ""},
		{"no event", `{"session":"default","payload":{}}`, false, "event"},
		{"no session", `{"event":"message","payload":{"id":"x","from":"1@c.us"}}`, false, "session"},
		{"payload not an object", `{"event":"message","session":"s","payload":"x"}`, false, "payload"},
		{"no id", `{"event":"message","session":"s","payload":{"from":"1@c.us","body":"b"}}`, false, "payload.id"},
		{"no from", `{"event":"message","session":"s","payload":{"id":"x","body":"b"}}`, false, "payload.from"},
		{"bad timestamp", `{"event":"message","session":"s","payload":{"id":"x","from":"1@c.us","timestamp":"soon"}}`, false, "payload.timestamp"},
		{"presences a map", `{"event":"presence.update","session":"s","payload":{"id":"1@c.us","presences":{}}}`, false, "payload.presences"},
	}
	for _, tt := range tests {
		res, err := waha.Parse([]byte(tt.body), providertest.Received)
		providertest.RequireRejected(t, tt.name, res, err, tt.malformed, tt.field)
	}
}
