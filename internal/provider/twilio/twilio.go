// Package twilio reads Twilio Messaging webhooks for WhatsApp (and SMS)
// (Twilio's Messaging webhook): one form-encoded message per request, signed
// with X-Twilio-Signature.
//
// Conversation key: "<To>:<From>", the sender number and the user's
// address as Twilio writes them, e.g.
// "whatsapp:+15550001111:whatsapp:+5511900000001".
package twilio

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

// Source names this provider in every message.
const Source = "twilio"

// TwiML is the empty answer Twilio expects: no reply is sent.
const TwiML = `<?xml version="1.0" encoding="UTF-8"?><Response></Response>`

// maxMedia bounds the MediaUrl{N} read (Twilio sends at most 10).
const maxMedia = 20

// messageTypes maps Twilio's MessageType to a lull type. Its value set is
// not fully documented [UNCERTAIN]; an unknown one is inferred from the
// fields present.
var messageTypes = map[string]string{
	"text": batch.TypeText, "image": batch.TypeImage, "audio": batch.TypeAudio,
	"video": batch.TypeVideo, "document": batch.TypeDocument, "sticker": batch.TypeSticker,
	"location": batch.TypeLocation, "contacts": batch.TypeContacts,
	"button": batch.TypeInteractive, "interactive": batch.TypeInteractive,
}

// Parse reads a webhook's form parameters (already verified).
func Parse(form url.Values, receivedAt time.Time) (provider.Result, error) {
	var res provider.Result
	for k, vs := range form {
		for _, v := range vs {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return res, fmt.Errorf("%w: parameter %q is not valid UTF-8", ingest.ErrMalformed, provider.Truncate(k, 64))
			}
		}
	}
	// A status callback (StatusCallback pointed here) reports on a message
	// the business sent: it is no user message.
	if st := strings.ToLower(firstOf(form, "MessageStatus", "SmsStatus")); st != "" && st != "received" {
		res.Ignore("status")
		return res, nil
	}
	sid := firstOf(form, "MessageSid", "SmsMessageSid", "SmsSid")
	id, err := provider.ID("MessageSid", sid)
	if err != nil {
		return res, fmt.Errorf("twilio message: %w", err)
	}
	from, to := form.Get("From"), form.Get("To")
	if strings.TrimSpace(from) == "" {
		return res, &ingest.FieldError{Field: "From", Problem: "is required"}
	}
	key, err := provider.Key("To", to, from)
	if err != nil {
		return res, fmt.Errorf("twilio message: %w", err)
	}
	msg := batch.Message{
		ID:         id,
		Text:       form.Get("Body"),
		ReceivedAt: batch.FormatTime(receivedAt),
		Source:     Source,
		From:       from,
		To:         to,
		ReplyTo:    form.Get("OriginalRepliedMessageSid"),
	}
	meta := provider.Meta{}
	if err := fill(form, &msg, meta); err != nil {
		return res, fmt.Errorf("twilio message: %w", err)
	}
	msg.Metadata = meta.JSON()
	res.Envelopes = append(res.Envelopes, ingest.Envelope{Key: key, Message: msg})
	return res, nil
}

// fill sets Type, Media, the location/button text and metadata.
func fill(form url.Values, msg *batch.Message, meta provider.Meta) error {
	media, err := mediaList(form)
	if err != nil {
		return err
	}
	lat, err := provider.ParseNum(form.Get("Latitude"))
	if err != nil {
		return &ingest.FieldError{Field: "Latitude", Problem: err.Error()}
	}
	long, err := provider.ParseNum(form.Get("Longitude"))
	if err != nil {
		return &ingest.FieldError{Field: "Longitude", Problem: err.Error()}
	}
	raw := form.Get("MessageType")
	typ, known := messageTypes[strings.ToLower(raw)]
	switch {
	case known:
	case lat.Valid && long.Valid:
		typ = batch.TypeLocation
	case form.Get("ButtonPayload") != "" || form.Get("ButtonText") != "":
		typ = batch.TypeInteractive
	case len(media) > 0:
		typ = mediaType(media[0].MimeType)
	case msg.Text != "":
		typ = batch.TypeText
	default:
		typ = batch.TypeUnsupported
	}
	msg.Type = typ
	if len(media) > 0 {
		msg.Media = &media[0]
		if typ == batch.TypeText || typ == batch.TypeUnsupported {
			msg.Type = mediaType(media[0].MimeType)
		}
	}
	if len(media) > 1 {
		extra := make([]map[string]string, 0, len(media)-1)
		for _, m := range media[1:] {
			extra = append(extra, map[string]string{"url": m.URL, "mime_type": m.MimeType})
		}
		meta.Any("extra_media", extra)
	}
	switch msg.Type {
	case batch.TypeLocation:
		if t := provider.JoinNonEmpty(", ", form.Get("Label"), form.Get("Address")); t != "" {
			msg.Text = t
		}
	case batch.TypeInteractive:
		if t := form.Get("ButtonText"); t != "" {
			msg.Text = t
		}
	}
	meta.Str("message_type", raw)
	if msg.Type == batch.TypeUnsupported {
		meta.Str("raw_type", raw)
	}
	meta.Str("profile_name", form.Get("ProfileName"))
	meta.Str("wa_id", form.Get("WaId"))
	meta.Str("button_payload", form.Get("ButtonPayload"))
	meta.Num("latitude", lat)
	meta.Num("longitude", long)
	meta.Str("address", form.Get("Address"))
	meta.Str("label", form.Get("Label"))
	meta.True("forwarded", form.Get("Forwarded") == "true")
	meta.True("frequently_forwarded", form.Get("FrequentlyForwarded") == "true")
	meta.Str("original_replied_message_sender", form.Get("OriginalRepliedMessageSender"))
	meta.Str("account_sid", form.Get("AccountSid"))
	meta.Str("messaging_service_sid", form.Get("MessagingServiceSid"))
	meta.Any("referral", referral(form))
	if cm := form.Get("ChannelMetadata"); cm != "" {
		if provider.IsJSON(cm) {
			meta.Raw("channel_metadata", []byte(cm))
		} else {
			meta.Str("channel_metadata", cm)
		}
	}
	return nil
}

// mediaList reads MediaUrl{N}/MediaContentType{N} for N < NumMedia.
func mediaList(form url.Values) ([]batch.Media, error) {
	s := strings.TrimSpace(form.Get("NumMedia"))
	if s == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return nil, &ingest.FieldError{Field: "NumMedia", Problem: "must be a non-negative integer"}
	}
	var out []batch.Media
	for i := 0; i < n && i < maxMedia; i++ {
		u := form.Get("MediaUrl" + strconv.Itoa(i))
		if u == "" {
			continue
		}
		out = append(out, batch.Media{URL: u, MimeType: form.Get("MediaContentType" + strconv.Itoa(i))})
	}
	return out, nil
}

// mediaType infers a lull type from a content type.
func mediaType(mime string) string {
	mime = strings.ToLower(mime)
	switch {
	case mime == "image/webp":
		return batch.TypeSticker
	case strings.HasPrefix(mime, "image/"):
		return batch.TypeImage
	case strings.HasPrefix(mime, "audio/"):
		return batch.TypeAudio
	case strings.HasPrefix(mime, "video/"):
		return batch.TypeVideo
	case strings.Contains(mime, "vcard"):
		return batch.TypeContacts
	default:
		return batch.TypeDocument
	}
}

// referral gathers the Referral* parameters of a Click-to-WhatsApp ad.
func referral(form url.Values) map[string]string {
	out := map[string]string{}
	for k, vs := range form {
		name, ok := strings.CutPrefix(k, "Referral")
		if !ok || name == "" || len(vs) == 0 || vs[0] == "" || name == "NumMedia" && vs[0] == "0" {
			continue
		}
		out[snake(name)] = vs[0]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// snake turns "SourceUrl" into "source_url".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func firstOf(form url.Values, names ...string) string {
	for _, n := range names {
		if v := form.Get(n); v != "" {
			return v
		}
	}
	return ""
}
