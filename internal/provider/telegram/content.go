package telegram

import (
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/provider"
)

// content sets the message's type, text and media: text, or a caption
// with the media; a photo is its largest size. Media are Telegram file
// ids (fetch them with getFile and the bot token); lull downloads nothing.
func content(m *message, msg *batch.Message, meta provider.Meta) {
	msg.Text = m.Text
	if msg.Text == "" {
		msg.Text = m.Caption
	}
	media := func(typ string, f *file, voice bool) {
		msg.Type = typ
		msg.Media = &batch.Media{ID: f.FileID.String(), MimeType: f.MimeType, Filename: f.FileName, Voice: voice}
		meta.Str("file_unique_id", f.FileUniqueID.String())
		meta.Num("duration", f.Duration)
	}
	switch {
	case len(m.Photo) > 0:
		media(batch.TypeImage, largest(m.Photo), false)
	case m.Voice != nil:
		media(batch.TypeAudio, m.Voice, true)
	case m.Audio != nil:
		media(batch.TypeAudio, m.Audio, false)
	case m.Video != nil:
		media(batch.TypeVideo, m.Video, false)
	case m.VideoNote != nil:
		media(batch.TypeVideo, m.VideoNote, false)
		meta.True("video_note", true)
	case m.Animation != nil:
		media(batch.TypeVideo, m.Animation, false)
		meta.True("animation", true)
	case m.Document != nil:
		media(batch.TypeDocument, m.Document, false)
	case m.Sticker != nil:
		media(batch.TypeSticker, m.Sticker, false)
		meta.True("animated", m.Sticker.IsAnimated || m.Sticker.IsVideo)
		if msg.Text == "" {
			msg.Text = m.Sticker.Emoji
		}
	case m.Location != nil:
		msg.Type = batch.TypeLocation
		meta.Num("latitude", m.Location.Latitude)
		meta.Num("longitude", m.Location.Longitude)
	case m.Contact != nil:
		msg.Type = batch.TypeContacts
		c := m.Contact
		msg.Text = provider.JoinNonEmpty(" ", c.FirstName, c.LastName)
		meta.Any("contacts", []map[string]string{{
			"phone_number": c.PhoneNumber, "first_name": c.FirstName, "last_name": c.LastName,
			"user_id": c.UserID.String(), "vcard": c.Vcard,
		}})
	case m.Text != "":
		msg.Type = batch.TypeText
	default:
		// A service message (a member joined, a pinned message, …), a
		// poll, a dice, or a kind newer than this parser.
		msg.Type = batch.TypeUnsupported
		meta.Str("raw_type", "other")
	}
}

// largest is the photo size with the most pixels (the last of equals, as
// Telegram lists them smallest first).
func largest(sizes []file) *file {
	best := &sizes[0]
	for i := range sizes {
		f := &sizes[i]
		if f.Width.Value*f.Height.Value >= best.Width.Value*best.Height.Value {
			best = f
		}
	}
	return best
}
