// Package batch defines what lull hands to the sinks: a conversation's burst
// of messages, ordered, with a deterministic id.
package batch

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Reasons a batch was flushed.
const (
	ReasonQuiet       = "quiet"
	ReasonMaxWait     = "max_wait"
	ReasonMaxMessages = "max_messages"
	ReasonManual      = "manual"
	// ReasonImmediate: a message matched an immediate-flush rule
	// (IMMEDIATE_FLUSH, e.g. a /command or a button reply).
	ReasonImmediate = "immediate"
	// ReasonResumed: the conversation was resumed after a pause.
	ReasonResumed = "resumed"
)

// Message types. Providers normalize theirs to these.
const (
	TypeText        = "text"
	TypeImage       = "image"
	TypeAudio       = "audio" // also voice notes (Media.Voice)
	TypeVideo       = "video"
	TypeDocument    = "document"
	TypeSticker     = "sticker"
	TypeLocation    = "location"
	TypeContacts    = "contacts"
	TypeInteractive = "interactive" // a button or list reply
	TypeReaction    = "reaction"
	TypeUnsupported = "unsupported"
)

// TimeLayout is how every time in a batch is written: RFC 3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Message is one buffered chat message as stored in Redis and delivered in a
// batch (messages[] of the README's "Batch JSON"). Source names the provider ("generic",
// "whatsapp", "evolution", "twilio"); Text holds the text, a media caption,
// a reply's title or a reaction's emoji; Metadata holds what else the
// provider said that has no field here.
type Message struct {
	ID         string          `json:"id"`
	Text       string          `json:"text"`
	Type       string          `json:"type"`
	ReceivedAt string          `json:"received_at"`
	Timestamp  string          `json:"timestamp,omitempty"`
	Source     string          `json:"source"`
	Metadata   json.RawMessage `json:"metadata"`
	From       string          `json:"from,omitempty"`     // the user's address at the provider (wa_id, JID, whatsapp:+55…)
	To         string          `json:"to,omitempty"`       // the business side (phone_number_id, instance, whatsapp:+1…)
	ReplyTo    string          `json:"reply_to,omitempty"` // provider id of the message this one quotes or reacts to
	Media      *Media          `json:"media,omitempty"`
	// Traceparent is the W3C trace context the webhook carrying the
	// message came with, if any; the sinks pass the batch's on.
	Traceparent string `json:"traceparent,omitempty"`
}

// Media references a provider-hosted attachment; lull never downloads it.
type Media struct {
	ID       string `json:"id,omitempty"`  // provider media id (Meta: fetch with the Graph API)
	URL      string `json:"url,omitempty"` // provider URL, when given (may need the provider's credentials)
	MimeType string `json:"mime_type,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	Filename string `json:"filename,omitempty"`
	Voice    bool   `json:"voice,omitempty"` // an audio recorded as a voice note
}

// Batch is the JSON every sink receives (the README's "Batch JSON").
type Batch struct {
	BatchID    string    `json:"batch_id"`
	Key        string    `json:"key"`
	Generation int64     `json:"generation"`
	Reason     string    `json:"reason"`
	Messages   []Message `json:"messages"`
	FirstAt    string    `json:"first_at"`
	LastAt     string    `json:"last_at"`
	FlushedAt  string    `json:"flushed_at"`
	Attempt    int       `json:"attempt"`
	// Paused: the batch ends a pause (a human handled the conversation
	// meanwhile); it holds what was kept while paused.
	Paused bool `json:"paused,omitempty"`
	// Replaces names the discarded batches whose messages this batch holds
	// again (first, in order, before the newer ones).
	Replaces []string `json:"replaces,omitempty"`
	// StatusURL is where a bot checks whether the batch is still current
	// (GET, with the API token); only with the conversation API.
	StatusURL string `json:"status_url,omitempty"`
}

// Traceparent is the trace context the sinks send the batch with: that of
// its last message that came with one ("" if none did). The bot answers the
// burst's last word, so its trace continues that message's.
func (b Batch) Traceparent() string {
	for i := len(b.Messages) - 1; i >= 0; i-- {
		if t := b.Messages[i].Traceparent; t != "" {
			return t
		}
	}
	return ""
}

// ID is the deterministic batch id: the conversation key and the generation
// of the last message the batch holds. A redelivered batch keeps it.
func ID(key string, generation int64) string {
	return fmt.Sprintf("%s:%d", key, generation)
}

// FormatTime writes t as a batch time (RFC 3339, UTC, milliseconds).
func FormatTime(t time.Time) string {
	return t.UTC().Format(TimeLayout)
}

// FormatMillis writes Unix milliseconds as a batch time.
func FormatMillis(ms int64) string {
	return FormatTime(time.UnixMilli(ms))
}

// ParseMillis reads a batch time (any RFC 3339 time) as Unix milliseconds;
// 0 when s is not one.
func ParseMillis(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return t.UnixMilli()
}

// New builds a batch from the raw stored messages (JSON objects in arrival
// order). Messages are ordered by provider timestamp, falling back to the
// time of receipt, with arrival order breaking ties; first_at and last_at are
// the earliest and latest receipt times.
func New(key string, generation int64, reason string, flushedAtMs int64, attempt int, raw []json.RawMessage) (Batch, error) {
	msgs := make([]Message, 0, len(raw))
	for i, r := range raw {
		var m Message
		if err := json.Unmarshal(r, &m); err != nil {
			return Batch{}, fmt.Errorf("batch %s: message %d: %w", ID(key, generation), i, err)
		}
		if len(m.Metadata) == 0 || string(m.Metadata) == "null" {
			m.Metadata = json.RawMessage("{}")
		}
		msgs = append(msgs, m)
	}
	Sort(msgs)
	b := Batch{
		BatchID:    ID(key, generation),
		Key:        key,
		Generation: generation,
		Reason:     reason,
		Messages:   msgs,
		FlushedAt:  FormatMillis(flushedAtMs),
		Attempt:    attempt,
	}
	var first, last time.Time
	for _, m := range msgs {
		t, err := time.Parse(time.RFC3339Nano, m.ReceivedAt)
		if err != nil {
			continue
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	if !first.IsZero() {
		b.FirstAt, b.LastAt = FormatTime(first), FormatTime(last)
	}
	return b, nil
}

// Sort orders messages by provider timestamp (or receipt time where a message
// has none), keeping arrival order among equals.
func Sort(msgs []Message) {
	at := make([]time.Time, len(msgs))
	for i, m := range msgs {
		at[i] = orderTime(m)
	}
	idx := make([]int, len(msgs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return at[idx[a]].Before(at[idx[b]]) })
	sorted := make([]Message, len(msgs))
	for i, j := range idx {
		sorted[i] = msgs[j]
	}
	copy(msgs, sorted)
}

func orderTime(m Message) time.Time {
	if m.Timestamp != "" {
		if t, err := time.Parse(time.RFC3339Nano, m.Timestamp); err == nil {
			return t
		}
	}
	t, _ := time.Parse(time.RFC3339Nano, m.ReceivedAt)
	return t
}
