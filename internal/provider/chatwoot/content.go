package chatwoot

import (
	"encoding/json"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider"
)

// content sets the type and media: the first attachment is the media
// (its data_url; lull downloads nothing), more go to metadata.extra_media;
// a submitted form or option list is interactive.
func content(e *event, msg *batch.Message, meta provider.Meta) {
	var attrs struct {
		SubmittedValues json.RawMessage `json:"submitted_values"`
		InReplyTo       provider.Str    `json:"in_reply_to"`
	}
	if len(e.ContentAttributes) > 0 && e.ContentAttributes[0] == '{' {
		_ = json.Unmarshal(e.ContentAttributes, &attrs)
	}
	msg.ReplyTo = attrs.InReplyTo.String()
	switch {
	case len(e.Attachments) > 0:
		a := e.Attachments[0]
		msg.Type = attachmentType(a.FileType)
		if msg.Type == batch.TypeLocation {
			meta.Num("latitude", a.CoordLat)
			meta.Num("longitude", a.CoordLong)
			if msg.Text == "" {
				msg.Text = a.FallbackTitle
			}
		} else {
			msg.Media = &batch.Media{ID: a.ID.String(), URL: a.DataURL}
		}
		if msg.Type == batch.TypeUnsupported {
			meta.Str("raw_type", provider.Truncate(a.FileType, 32))
		}
		if len(e.Attachments) > 1 {
			var extra []map[string]string
			for _, x := range e.Attachments[1:] {
				extra = append(extra, map[string]string{"id": x.ID.String(), "file_type": x.FileType, "url": x.DataURL})
			}
			meta.Any("extra_media", extra)
		}
	case len(attrs.SubmittedValues) > 0 && string(attrs.SubmittedValues) != "null":
		msg.Type = batch.TypeInteractive
		meta.Raw("submitted_values", attrs.SubmittedValues)
	case msg.Text != "":
		msg.Type = batch.TypeText
	default:
		msg.Type = batch.TypeUnsupported
		meta.Str("raw_type", provider.Truncate(e.ContentType, 32))
	}
}

// attachmentType is the lull type of a Chatwoot attachment's file_type.
func attachmentType(fileType string) string {
	switch fileType {
	case "image":
		return batch.TypeImage
	case "audio":
		return batch.TypeAudio
	case "video":
		return batch.TypeVideo
	case "file":
		return batch.TypeDocument
	case "location":
		return batch.TypeLocation
	case "contact":
		return batch.TypeContacts
	default: // fallback (a link or a share), story_mention, …
		return batch.TypeUnsupported
	}
}
