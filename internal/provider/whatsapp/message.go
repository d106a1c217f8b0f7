package whatsapp

import (
	"encoding/json"
	"strings"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider"
)

// message is one value.messages[] item of a Meta notification.
type message struct {
	ID         provider.Str    `json:"id"`
	From       provider.Str    `json:"from"`
	FromUserID provider.Str    `json:"from_user_id"`
	Timestamp  json.RawMessage `json:"timestamp"`
	Type       string          `json:"type"`
	GroupID    provider.Str    `json:"group_id"`
	Context    *struct {
		ID                  provider.Str    `json:"id"`
		Forwarded           bool            `json:"forwarded"`
		FrequentlyForwarded bool            `json:"frequently_forwarded"`
		ReferredProduct     json.RawMessage `json:"referred_product"`
	} `json:"context"`
	Referral json.RawMessage `json:"referral"`
	Errors   json.RawMessage `json:"errors"`

	Text *struct {
		Body string `json:"body"`
	} `json:"text"`
	Image    *media          `json:"image"`
	Audio    *media          `json:"audio"`
	Video    *media          `json:"video"`
	Document *media          `json:"document"`
	Sticker  *media          `json:"sticker"`
	Location *location       `json:"location"`
	Contacts json.RawMessage `json:"contacts"`
	Button   *struct {
		Payload string `json:"payload"`
		Text    string `json:"text"`
	} `json:"button"`
	Interactive *interactive `json:"interactive"`
	Reaction    *struct {
		MessageID provider.Str `json:"message_id"`
		Emoji     string       `json:"emoji"`
	} `json:"reaction"`
}

type media struct {
	ID       provider.Str `json:"id"`
	URL      string       `json:"url"`
	MimeType string       `json:"mime_type"`
	SHA256   string       `json:"sha256"`
	Caption  string       `json:"caption"`
	Filename string       `json:"filename"`
	Voice    bool         `json:"voice"`
	Animated bool         `json:"animated"`
}

type location struct {
	Latitude  provider.Num `json:"latitude"`
	Longitude provider.Num `json:"longitude"`
	Name      string       `json:"name"`
	Address   string       `json:"address"`
	URL       string       `json:"url"`
}

type interactive struct {
	Type        string `json:"type"`
	ButtonReply *struct {
		ID    provider.Str `json:"id"`
		Title string       `json:"title"`
	} `json:"button_reply"`
	ListReply *struct {
		ID          provider.Str `json:"id"`
		Title       string       `json:"title"`
		Description string       `json:"description"`
	} `json:"list_reply"`
}

// content fills the type-specific fields: Type, Text, Media, ReplyTo and
// metadata. An unknown type, or a known one without its object, becomes
// TypeUnsupported with the raw type and its object in metadata.
func content(m *message, msg *batch.Message, meta provider.Meta, raw json.RawMessage) {
	switch {
	case m.Type == "text" && m.Text != nil:
		msg.Type, msg.Text = batch.TypeText, m.Text.Body
	case m.Type == "image" && m.Image != nil:
		setMedia(msg, batch.TypeImage, m.Image)
	case m.Type == "audio" && m.Audio != nil:
		setMedia(msg, batch.TypeAudio, m.Audio)
	case m.Type == "video" && m.Video != nil:
		setMedia(msg, batch.TypeVideo, m.Video)
	case m.Type == "document" && m.Document != nil:
		setMedia(msg, batch.TypeDocument, m.Document)
	case m.Type == "sticker" && m.Sticker != nil:
		setMedia(msg, batch.TypeSticker, m.Sticker)
		meta.True("animated", m.Sticker.Animated)
	case m.Type == "location" && m.Location != nil:
		l := m.Location
		msg.Type, msg.Text = batch.TypeLocation, provider.JoinNonEmpty(", ", l.Name, l.Address)
		meta.Num("latitude", l.Latitude)
		meta.Num("longitude", l.Longitude)
		meta.Str("name", l.Name)
		meta.Str("address", l.Address)
		meta.Str("url", l.URL)
	case m.Type == "contacts" && len(m.Contacts) > 0 && string(m.Contacts) != "null":
		msg.Type, msg.Text = batch.TypeContacts, contactNames(m.Contacts)
		meta.Raw("contacts", m.Contacts)
	case m.Type == "interactive" && m.Interactive != nil:
		msg.Type = batch.TypeInteractive
		interactiveReply(m.Interactive, msg, meta, raw)
	case m.Type == "button" && m.Button != nil:
		msg.Type, msg.Text = batch.TypeInteractive, m.Button.Text
		meta.Str("interactive_type", "button")
		meta.Str("button_payload", m.Button.Payload)
	case m.Type == "reaction" && m.Reaction != nil:
		msg.Type, msg.Text = batch.TypeReaction, m.Reaction.Emoji
		msg.ReplyTo = m.Reaction.MessageID.String()
		meta.True("removed", m.Reaction.Emoji == "")
	default:
		msg.Type = batch.TypeUnsupported
		meta.Str("raw_type", provider.Truncate(m.Type, 64))
		meta.Raw("errors", m.Errors)
		if m.Type != "" && m.Type != "errors" {
			meta.Raw(provider.Truncate(m.Type, 64), rawField(raw, m.Type))
		}
	}
}

func setMedia(msg *batch.Message, typ string, m *media) {
	msg.Type, msg.Text = typ, m.Caption
	msg.Media = &batch.Media{
		ID:       m.ID.String(),
		URL:      m.URL,
		MimeType: m.MimeType,
		SHA256:   m.SHA256,
		Filename: m.Filename,
		Voice:    m.Voice,
	}
}

func interactiveReply(in *interactive, msg *batch.Message, meta provider.Meta, raw json.RawMessage) {
	meta.Str("interactive_type", provider.Truncate(in.Type, 64))
	switch {
	case in.Type == "button_reply" && in.ButtonReply != nil:
		msg.Text = in.ButtonReply.Title
		meta.Str("reply_id", in.ButtonReply.ID.String())
	case in.Type == "list_reply" && in.ListReply != nil:
		msg.Text = in.ListReply.Title
		meta.Str("reply_id", in.ListReply.ID.String())
		meta.Str("description", in.ListReply.Description)
	default:
		// nfm_reply (Flows) and types not documented yet: keep the object.
		meta.Raw("interactive", rawField(raw, "interactive"))
	}
}

// contactNames is the shared contacts' formatted names, comma separated.
func contactNames(raw json.RawMessage) string {
	var cs []struct {
		Name struct {
			FormattedName string `json:"formatted_name"`
		} `json:"name"`
	}
	if json.Unmarshal(raw, &cs) != nil {
		return ""
	}
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		if n := strings.TrimSpace(c.Name.FormattedName); n != "" {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// rawField is the JSON value of a message's top-level field k (nil if none).
func rawField(raw json.RawMessage, k string) json.RawMessage {
	var all map[string]json.RawMessage
	if json.Unmarshal(raw, &all) != nil {
		return nil
	}
	return all[k]
}
