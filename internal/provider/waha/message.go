package waha

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

// wamessage is WAHA's WAMessage, the fields lull reads. _data (the
// engine's raw message) is unstable across engines and never read.
type wamessage struct {
	ID          provider.Str    `json:"id"`
	Timestamp   json.RawMessage `json:"timestamp"`
	From        provider.Str    `json:"from"`
	FromMe      bool            `json:"fromMe"`
	To          provider.Str    `json:"to"`
	Participant provider.Str    `json:"participant"`
	Author      provider.Str    `json:"author"`
	Body        string          `json:"body"`
	HasMedia    bool            `json:"hasMedia"`
	Media       *struct {
		URL      string          `json:"url"`
		Mimetype string          `json:"mimetype"`
		Filename string          `json:"filename"`
		Error    json.RawMessage `json:"error"`
	} `json:"media"`
	Location *struct {
		Latitude    provider.Num `json:"latitude"`
		Longitude   provider.Num `json:"longitude"`
		Description string       `json:"description"`
	} `json:"location"`
	VCards  []string `json:"vCards"`
	ReplyTo *struct {
		ID          provider.Str `json:"id"`
		Participant provider.Str `json:"participant"`
	} `json:"replyTo"`
	Reaction *struct {
		Text      *string      `json:"text"`
		MessageID provider.Str `json:"messageId"`
	} `json:"reaction"`
	Source string `json:"source"`
}

func message(res *provider.Result, session, me, engine string, raw json.RawMessage, receivedAt time.Time) error {
	var m wamessage
	if err := provider.Unmarshal("payload", raw, &m); err != nil {
		return err
	}
	chat := m.From.String()
	switch {
	case m.FromMe:
		res.Ignore("from_me")
		return nil
	case isBroadcast(chat):
		res.Ignore("broadcast")
		return nil
	}
	id, err := provider.ID("payload.id", m.ID.String())
	if err != nil {
		return err
	}
	key, err := provider.Key("payload.from", session, chat)
	if err != nil {
		return err
	}
	ts, err := provider.Timestamp("payload.timestamp", m.Timestamp)
	if err != nil {
		return err
	}
	sender := chat
	meta := provider.Meta{}
	if isGroup(chat) {
		meta.Str("group_id", chat)
		if p := m.Participant.String(); p != "" {
			sender = p
		} else if a := m.Author.String(); a != "" {
			sender = a
		}
	}
	to := m.To.String()
	if to == "" || isGroup(to) {
		to = me
	}
	msg := batch.Message{
		ID:         id,
		ReceivedAt: batch.FormatTime(receivedAt),
		Timestamp:  ts,
		Source:     Source,
		From:       sender,
		To:         to,
	}
	meta.Str("session", session)
	meta.Str("engine", engine)
	if m.ReplyTo != nil {
		msg.ReplyTo = m.ReplyTo.ID.String()
		meta.Str("quoted_participant", m.ReplyTo.Participant.String())
	}
	content(&m, &msg, meta)
	msg.Metadata = meta.JSON()
	res.Envelopes = append(res.Envelopes, ingest.Envelope{Key: key, Message: msg})
	return nil
}

// content sets the message's type, text and media. The type of a media
// message comes from its MIME type; a media message whose file WAHA did
// not give (no media object) is unsupported, with metadata.has_media.
func content(m *wamessage, msg *batch.Message, meta provider.Meta) {
	msg.Text = m.Body
	switch {
	case m.Reaction != nil:
		msg.Type = batch.TypeReaction
		msg.Text = ""
		if m.Reaction.Text != nil {
			msg.Text = *m.Reaction.Text
		}
		msg.ReplyTo = m.Reaction.MessageID.String()
		meta.True("removed", msg.Text == "")
	case m.Location != nil && (m.Location.Latitude.Valid || m.Location.Longitude.Valid):
		msg.Type = batch.TypeLocation
		msg.Text = provider.JoinNonEmpty("\n", m.Location.Description, strings.TrimSpace(m.Body))
		meta.Num("latitude", m.Location.Latitude)
		meta.Num("longitude", m.Location.Longitude)
	case len(m.VCards) > 0:
		msg.Type = batch.TypeContacts
		meta.Any("contacts", m.VCards)
	case m.HasMedia && m.Media != nil && (m.Media.URL != "" || m.Media.Mimetype != ""):
		msg.Type = mediaType(m.Media.Mimetype)
		msg.Media = &batch.Media{URL: m.Media.URL, MimeType: m.Media.Mimetype, Filename: m.Media.Filename}
		if msg.Type == batch.TypeAudio && strings.Contains(m.Media.Mimetype, "opus") {
			msg.Media.Voice = true // WhatsApp voice notes are Opus; audio files rarely are
		}
		meta.Raw("media_error", m.Media.Error)
	case m.HasMedia:
		msg.Type = batch.TypeUnsupported
		meta.True("has_media", true)
		meta.Str("raw_type", "media")
	case strings.TrimSpace(m.Body) != "":
		msg.Type = batch.TypeText
	default:
		msg.Type = batch.TypeUnsupported
		meta.Str("raw_type", "empty")
	}
}

// mediaType is the lull type of a media MIME type.
func mediaType(mime string) string {
	mt := strings.ToLower(mime)
	switch {
	case mt == "image/webp":
		return batch.TypeSticker
	case strings.HasPrefix(mt, "image/"):
		return batch.TypeImage
	case strings.HasPrefix(mt, "audio/"):
		return batch.TypeAudio
	case strings.HasPrefix(mt, "video/"):
		return batch.TypeVideo
	default:
		return batch.TypeDocument
	}
}
