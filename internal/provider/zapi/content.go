package zapi

import (
	"encoding/json"
	"sort"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider"
)

// object is the union of the content objects lull reads; each kind fills
// some of its fields.
type object struct {
	Message           string       `json:"message"` // text, buttonsResponseMessage, listResponseMessage
	Caption           string       `json:"caption"`
	MimeType          string       `json:"mimeType"`
	ImageURL          string       `json:"imageUrl"`
	AudioURL          string       `json:"audioUrl"`
	VideoURL          string       `json:"videoUrl"`
	DocumentURL       string       `json:"documentUrl"`
	StickerURL        string       `json:"stickerUrl"`
	FileName          string       `json:"fileName"`
	Title             string       `json:"title"`
	PTT               bool         `json:"ptt"`
	Seconds           provider.Num `json:"seconds"`
	Latitude          provider.Num `json:"latitude"`
	Longitude         provider.Num `json:"longitude"`
	Address           string       `json:"address"`
	URL               string       `json:"url"`
	Name              string       `json:"name"`
	DisplayName       string       `json:"displayName"`
	VCard             string       `json:"vCard"`
	Value             string       `json:"value"` // reaction
	ButtonID          provider.Str `json:"buttonId"`
	SelectedRow       provider.Str `json:"selectedRowId"`
	ReferencedMessage *struct {
		MessageID provider.Str `json:"messageId"`
	} `json:"referencedMessage"`
}

// kinds are the content objects, in the order they are looked for.
var kinds = []struct{ key, typ string }{
	{"text", batch.TypeText},
	{"image", batch.TypeImage},
	{"audio", batch.TypeAudio},
	{"video", batch.TypeVideo},
	{"document", batch.TypeDocument},
	{"sticker", batch.TypeSticker},
	{"location", batch.TypeLocation},
	{"contact", batch.TypeContacts},
	{"reaction", batch.TypeReaction},
	{"buttonsResponseMessage", batch.TypeInteractive},
	{"listResponseMessage", batch.TypeInteractive},
	{"buttonReply", batch.TypeInteractive},
}

// unsupportedKinds are content objects lull keeps as unsupported, with the
// object in metadata.
var unsupportedKinds = []string{"poll", "pollVote", "order", "product", "payment", "requestPayment",
	"sendPayment", "event", "notification", "call", "hydratedTemplate", "carouselMessage"}

// content sets the message's type, text and media from the one content
// object the callback holds; a callback with none lull knows is
// unsupported, with the object (or its name) in metadata.
func content(all map[string]json.RawMessage, msg *batch.Message, meta provider.Meta) error {
	for _, k := range kinds {
		raw, ok := all[k.key]
		if !ok || len(raw) == 0 || raw[0] != '{' {
			continue
		}
		var o object
		if err := provider.Unmarshal(k.key, raw, &o); err != nil {
			return err
		}
		msg.Type = k.typ
		fill(k.key, &o, msg, meta)
		return nil
	}
	msg.Type = batch.TypeUnsupported
	for _, k := range unsupportedKinds {
		if raw, ok := all[k]; ok {
			meta.Str("raw_type", k)
			meta.Raw(k, raw)
			return nil
		}
	}
	meta.Str("raw_type", unknownKey(all))
	return nil
}

func fill(kind string, o *object, msg *batch.Message, meta provider.Meta) {
	media := func(url string) {
		msg.Media = &batch.Media{URL: url, MimeType: o.MimeType, Filename: o.FileName}
		msg.Text = o.Caption
		meta.Num("seconds", o.Seconds)
	}
	switch kind {
	case "text":
		msg.Text = o.Message
	case "image":
		media(o.ImageURL)
	case "audio":
		media(o.AudioURL)
		msg.Media.Voice = o.PTT
	case "video":
		media(o.VideoURL)
	case "document":
		media(o.DocumentURL)
		if msg.Media.Filename == "" {
			msg.Media.Filename = o.Title
		}
	case "sticker":
		media(o.StickerURL)
	case "location":
		msg.Text = provider.JoinNonEmpty("\n", o.Name, o.Address)
		meta.Num("latitude", o.Latitude)
		meta.Num("longitude", o.Longitude)
		meta.Str("url", o.URL)
	case "contact":
		msg.Text = o.DisplayName
		meta.Any("contacts", []map[string]string{{"display_name": o.DisplayName, "vcard": o.VCard}})
	case "reaction":
		msg.Text = o.Value
		if o.ReferencedMessage != nil {
			msg.ReplyTo = o.ReferencedMessage.MessageID.String()
		}
		meta.True("removed", o.Value == "")
	case "buttonsResponseMessage", "buttonReply":
		msg.Text = o.Message
		meta.Str("reply_id", o.ButtonID.String())
	case "listResponseMessage":
		msg.Text = o.Title
		meta.Str("reply_id", o.SelectedRow.String())
		meta.Str("description", o.Message)
	}
}

// unknownKey names an object-valued field that is none of the known
// callback fields: the likely content kind of a newer Z-API.
func unknownKey(all map[string]json.RawMessage) string {
	var keys []string
	for k, v := range all {
		if len(v) > 0 && v[0] == '{' {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "unknown"
	}
	return provider.Truncate(keys[0], 64)
}
