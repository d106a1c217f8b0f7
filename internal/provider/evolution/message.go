package evolution

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider"
)

// contextInfo is what a quoting, forwarded or mentioning message carries.
type contextInfo struct {
	StanzaID        provider.Str    `json:"stanzaId"`
	Participant     provider.Str    `json:"participant"`
	MentionedJID    json.RawMessage `json:"mentionedJid"`
	IsForwarded     bool            `json:"isForwarded"`
	ForwardingScore provider.Num    `json:"forwardingScore"`
}

// body is the union of the WAProto content messages lull reads; each
// message kind fills some of these fields.
type body struct {
	Text        string          `json:"text"` // extendedTextMessage, reactionMessage
	URL         string          `json:"url"`
	Mimetype    string          `json:"mimetype"`
	Caption     string          `json:"caption"`
	FileName    string          `json:"fileName"`
	FileSha256  json.RawMessage `json:"fileSha256"`
	PTT         bool            `json:"ptt"`
	IsAnimated  bool            `json:"isAnimated"`
	Seconds     provider.Num    `json:"seconds"`
	ContextInfo *contextInfo    `json:"contextInfo"`

	DegreesLatitude  provider.Num `json:"degreesLatitude"`
	DegreesLongitude provider.Num `json:"degreesLongitude"`
	Name             string       `json:"name"`
	Address          string       `json:"address"`

	DisplayName string          `json:"displayName"`
	Vcard       string          `json:"vcard"`
	Contacts    json.RawMessage `json:"contacts"`

	Key *struct {
		ID provider.Str `json:"id"`
	} `json:"key"` // reactionMessage: the message reacted to

	SelectedButtonID    provider.Str `json:"selectedButtonId"`
	SelectedDisplayText string       `json:"selectedDisplayText"`
	SelectedID          provider.Str `json:"selectedId"`
	Title               string       `json:"title"`
	Description         string       `json:"description"`
	SingleSelectReply   *struct {
		SelectedRowID provider.Str `json:"selectedRowId"`
	} `json:"singleSelectReply"`
	Body *struct {
		Text string `json:"text"`
	} `json:"body"`
	NativeFlowResponseMessage json.RawMessage `json:"nativeFlowResponseMessage"`

	Message map[string]json.RawMessage `json:"message"` // wrappers: ephemeral, viewOnce, documentWithCaption
}

// kinds maps the content keys of data.message to a lull type, in the order
// they are looked for when data.messageType does not name one.
var kinds = []struct{ key, typ string }{
	{"conversation", batch.TypeText},
	{"extendedTextMessage", batch.TypeText},
	{"imageMessage", batch.TypeImage},
	{"videoMessage", batch.TypeVideo},
	{"ptvMessage", batch.TypeVideo},
	{"audioMessage", batch.TypeAudio},
	{"documentMessage", batch.TypeDocument},
	{"stickerMessage", batch.TypeSticker},
	{"locationMessage", batch.TypeLocation},
	{"liveLocationMessage", batch.TypeLocation},
	{"contactMessage", batch.TypeContacts},
	{"contactsArrayMessage", batch.TypeContacts},
	{"reactionMessage", batch.TypeReaction},
	{"buttonsResponseMessage", batch.TypeInteractive},
	{"listResponseMessage", batch.TypeInteractive},
	{"templateButtonReplyMessage", batch.TypeInteractive},
	{"interactiveResponseMessage", batch.TypeInteractive},
}

// wrappers hold the real content under .message.
var wrappers = []string{"ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension", "documentWithCaptionMessage"}

// find picks the content key of m: messageType when it names one present,
// else the first known key present, unwrapping wrappers (a few levels).
func find(m map[string]json.RawMessage, messageType string, meta provider.Meta) (key, typ string, raw json.RawMessage) {
	for range 4 {
		for _, k := range kinds {
			if k.key == messageType && present(m[k.key]) {
				return k.key, k.typ, m[k.key]
			}
		}
		for _, k := range kinds {
			if present(m[k.key]) {
				return k.key, k.typ, m[k.key]
			}
		}
		unwrapped := false
		for _, w := range wrappers {
			var inner body
			if present(m[w]) && json.Unmarshal(m[w], &inner) == nil && inner.Message != nil {
				meta.True("view_once", strings.HasPrefix(w, "viewOnce"))
				m, unwrapped = inner.Message, true
				break
			}
		}
		if !unwrapped {
			break
		}
	}
	return "", batch.TypeUnsupported, nil
}

func present(raw json.RawMessage) bool { return len(raw) != 0 && string(raw) != "null" }

// content fills Type, Text, Media, ReplyTo and metadata from data.message.
func content(m map[string]json.RawMessage, messageType string, ctx *contextInfo, msg *batch.Message, meta provider.Meta) error {
	key, typ, raw := find(m, messageType, meta)
	msg.Type = typ
	var b body
	switch key {
	case "":
		unsupported(m, messageType, meta)
	case "conversation":
		if err := provider.Unmarshal("data.message.conversation", raw, &msg.Text); err != nil {
			return err
		}
	default:
		if err := provider.Unmarshal("data.message."+key, raw, &b); err != nil {
			return err
		}
	}
	if ctx == nil {
		ctx = b.ContextInfo
	}
	if ctx != nil {
		msg.ReplyTo = ctx.StanzaID.String()
		meta.Str("quoted_participant", ctx.Participant.String())
		meta.Raw("mentioned", ctx.MentionedJID)
		meta.True("forwarded", ctx.IsForwarded)
	}
	switch typ {
	case batch.TypeText:
		if key == "extendedTextMessage" {
			msg.Text = b.Text
		}
	case batch.TypeImage, batch.TypeVideo, batch.TypeAudio, batch.TypeDocument, batch.TypeSticker:
		media(m, key, &b, msg, meta)
	case batch.TypeLocation:
		msg.Text = provider.JoinNonEmpty(", ", b.Name, b.Address)
		meta.Num("latitude", b.DegreesLatitude)
		meta.Num("longitude", b.DegreesLongitude)
		meta.Str("name", b.Name)
		meta.Str("address", b.Address)
		meta.True("live", key == "liveLocationMessage")
	case batch.TypeContacts:
		msg.Text = b.DisplayName
		meta.Any("contacts", contacts(key, &b))
	case batch.TypeReaction:
		msg.Text = b.Text
		if b.Key != nil {
			msg.ReplyTo = b.Key.ID.String()
		}
		meta.True("removed", b.Text == "")
	case batch.TypeInteractive:
		interactive(key, &b, msg, meta)
	}
	return nil
}

func media(m map[string]json.RawMessage, key string, b *body, msg *batch.Message, meta provider.Meta) {
	msg.Text = b.Caption
	msg.Media = &batch.Media{
		URL:      b.URL,
		MimeType: b.Mimetype,
		SHA256:   provider.Bytes(b.FileSha256),
		Filename: b.FileName,
		Voice:    key == "audioMessage" && b.PTT,
	}
	// With S3 on, Evolution adds a downloadable mediaUrl; the url above is
	// WhatsApp's encrypted CDN file.
	var mediaURL string
	if present(m["mediaUrl"]) && json.Unmarshal(m["mediaUrl"], &mediaURL) == nil && mediaURL != "" {
		meta.Str("cdn_url", msg.Media.URL)
		msg.Media.URL = mediaURL
	}
	// base64:true puts the whole file in the payload: too big to buffer.
	meta.True("base64_omitted", present(m["base64"]))
	meta.True("ptv", key == "ptvMessage")
	meta.True("animated", b.IsAnimated)
	meta.Num("seconds", b.Seconds)
	var stt string
	if key == "audioMessage" && present(m["speechToText"]) && json.Unmarshal(m["speechToText"], &stt) == nil && stt != "" {
		msg.Text = stt // Evolution's OpenAI transcription, when enabled
		meta.True("speech_to_text", true)
	}
}

func interactive(key string, b *body, msg *batch.Message, meta provider.Meta) {
	meta.Str("interactive_type", key)
	switch key {
	case "buttonsResponseMessage":
		msg.Text = b.SelectedDisplayText
		meta.Str("reply_id", b.SelectedButtonID.String())
	case "templateButtonReplyMessage":
		msg.Text = b.SelectedDisplayText
		meta.Str("reply_id", b.SelectedID.String())
	case "listResponseMessage":
		msg.Text = b.Title
		if b.SingleSelectReply != nil {
			meta.Str("reply_id", b.SingleSelectReply.SelectedRowID.String())
		}
		meta.Str("description", b.Description)
	case "interactiveResponseMessage":
		if b.Body != nil {
			msg.Text = b.Body.Text
		}
		meta.Raw("native_flow_response", b.NativeFlowResponseMessage)
	}
}

// contacts lists a contact card, or an array of them, as
// [{"display_name", "vcard"}].
func contacts(key string, b *body) []map[string]string {
	if key == "contactMessage" {
		return []map[string]string{{"display_name": b.DisplayName, "vcard": b.Vcard}}
	}
	var cs []struct {
		DisplayName string `json:"displayName"`
		Vcard       string `json:"vcard"`
	}
	if json.Unmarshal(b.Contacts, &cs) != nil || len(cs) == 0 {
		return nil
	}
	out := make([]map[string]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, map[string]string{"display_name": c.DisplayName, "vcard": c.Vcard})
	}
	return out
}

// maxRawContent bounds the unsupported content copied into metadata: small
// things (a poll) are useful, media thumbnails are not.
const maxRawContent = 4096

// unsupported records what an unknown message held: its type and, when
// small, its content object.
func unsupported(m map[string]json.RawMessage, messageType string, meta provider.Meta) {
	k := firstContentKey(m, messageType)
	meta.Str("raw_type", provider.Truncate(k, 64))
	if raw := m[k]; len(raw) <= maxRawContent {
		meta.Raw(provider.Truncate(k, 64), raw)
	}
}

// firstContentKey names an unsupported message's content: messageType, or
// the first key of data.message that is not one of Evolution's additions.
func firstContentKey(m map[string]json.RawMessage, messageType string) string {
	if messageType != "" {
		return messageType
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		switch k {
		case "messageContextInfo", "base64", "mediaUrl", "speechToText":
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return "empty"
	}
	sort.Strings(keys)
	return keys[0]
}
