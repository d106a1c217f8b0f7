package telegram_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/telegram"
)

func TestParse_Fixtures(t *testing.T) {
	t.Parallel()
	providertest.GoldenFixtures(t, "*.json", telegram.Parse)
}

func TestParse_KeysTypesAndIgnored(t *testing.T) {
	t.Parallel()
	fx := providertest.Fixtures(t, "*.json")
	tests := []struct {
		fixture, key, typ, from string
		ignored                 map[string]int
	}{
		{"text", "111111111", batch.TypeText, "111111111", nil},
		{"command", "111111111", batch.TypeText, "111111111", nil},
		{"photo", "111111111", batch.TypeImage, "111111111", nil},
		{"album_1", "111111111", batch.TypeImage, "111111111", nil},
		{"voice", "111111111", batch.TypeAudio, "111111111", nil},
		{"audio", "111111111", batch.TypeAudio, "111111111", nil},
		{"video", "111111111", batch.TypeVideo, "111111111", nil},
		{"video_note", "111111111", batch.TypeVideo, "111111111", nil},
		{"document", "111111111", batch.TypeDocument, "111111111", nil},
		{"sticker", "111111111", batch.TypeSticker, "111111111", nil},
		{"location", "111111111", batch.TypeLocation, "111111111", nil},
		{"contact", "111111111", batch.TypeContacts, "111111111", nil},
		{"reply", "111111111", batch.TypeText, "111111111", nil},
		{"group", "-1001000000001", batch.TypeText, "111111111", nil},
		{"callback_query", "111111111", batch.TypeInteractive, "111111111", nil},
		{"edited_message", "111111111", batch.TypeText, "111111111", nil},
		{"service_message", "-1001000000001", batch.TypeUnsupported, "111111111", nil},
		{"callback_inline", "", "", "", map[string]int{"callback_query:inline": 1}},
		{"channel_post", "", "", "", map[string]int{"update:channel_post": 1}},
	}
	for _, tt := range tests {
		res, err := telegram.Parse(fx[tt.fixture], providertest.Received)
		require.NoError(t, err, tt.fixture)
		require.Equal(t, tt.ignored, res.Ignored, tt.fixture)
		if tt.key == "" {
			require.Empty(t, res.Envelopes, tt.fixture)
			continue
		}
		require.Len(t, res.Envelopes, 1, tt.fixture)
		e := res.Envelopes[0]
		require.Equal(t, tt.key, e.Key, tt.fixture)
		require.Equal(t, tt.typ, e.Message.Type, tt.fixture)
		require.Equal(t, tt.from, e.Message.From, tt.fixture)
	}
}

func TestParse_Details(t *testing.T) {
	t.Parallel()
	msg := func(f string) batch.Message {
		res := providertest.ParseFixture(t, f, telegram.Parse)
		require.Len(t, res.Envelopes, 1, f)
		return res.Envelopes[0].Message
	}
	text := msg("text.json")
	require.Equal(t, "900000001", text.ID, "deduped on update_id")
	require.Equal(t, "2023-11-14T22:13:20.000Z", text.Timestamp)

	photo := msg("photo.json")
	require.Equal(t, "PHOTO_L", photo.Media.ID, "the largest size")
	require.Equal(t, "olha a foto", photo.Text, "the caption")

	require.True(t, msg("voice.json").Media.Voice)
	require.Equal(t, "9", msg("reply.json").ReplyTo)

	cb := msg("callback_query.json")
	require.Equal(t, "plano_basico", cb.Text)
	require.Equal(t, "30", cb.ReplyTo)

	require.JSONEq(t, `{"chat_type":"private","edit_date":"2023-11-14T22:13:40.000Z","edited":true,"first_name":"Cliente","language_code":"pt-br","message_id":"10","username":"cliente_teste"}`,
		string(msg("edited_message.json").Metadata))
	require.Contains(t, string(msg("album_1.json").Metadata), `"media_group_id":"13900000000000001"`)
}

func TestParse_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		malformed bool
		field     string
	}{
		{"not JSON", `{"update_id":`, true, ""},
		{"an array", `[1]`, true, ""},
		{"no update_id", `{"message":{"chat":{"id":1},"text":"x"}}`, false, "update_id"},
		{"negative update_id", `{"update_id":-1,"message":{"chat":{"id":1},"text":"x"}}`, false, "update_id"},
		{"no chat", `{"update_id":1,"message":{"text":"x"}}`, false, "message.chat"},
		{"chat without id", `{"update_id":1,"message":{"chat":{},"text":"x"}}`, false, "message.chat.id"},
		{"bad date", `{"update_id":1,"message":{"chat":{"id":1},"date":"tomorrow","text":"x"}}`, false, "message.date"},
		{"photo not a list", `{"update_id":1,"message":{"chat":{"id":1},"photo":{}}}`, false, "body.message.photo"},
	}
	for _, tt := range tests {
		res, err := telegram.Parse([]byte(tt.body), providertest.Received)
		providertest.RequireRejected(t, tt.name, res, err, tt.malformed, tt.field)
	}
}
