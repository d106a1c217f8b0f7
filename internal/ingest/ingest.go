// Package ingest turns webhook payloads into lull messages and carries them
// through the inbound queue as envelopes.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/jsonenc"
)

// Limits of the identifiers a payload may carry.
const (
	MaxKeyBytes = 512
	MaxIDBytes  = 256
)

// ErrMalformed means the body is not a JSON object (answered 400).
var ErrMalformed = errors.New("ingest: malformed JSON")

// FieldError is a well-formed payload with a missing or invalid field
// (answered 422, naming the field).
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Problem }

func fieldErr(field, problem string) error { return &FieldError{Field: field, Problem: problem} }

// Envelope kinds.
const (
	KindMessage = ""       // a chat message, appended to the buffer
	KindTyping  = "typing" // the user is typing or recording: extends the quiet window
	KindPause   = "pause"  // a human took the conversation over: hold its batches back until resumed
	KindResume  = "resume" // the human handed it back: what was held back is due at once
)

// IsControl reports whether kind changes the conversation's state instead
// of adding a message to its buffer (typing, pause, resume).
func IsControl(kind string) bool {
	return kind == KindTyping || kind == KindPause || kind == KindResume
}

// Envelope is one accepted event on its way through the inbound queue.
type Envelope struct {
	Key      string        `json:"key"`
	Kind     string        `json:"kind,omitempty"`
	Message  batch.Message `json:"message"`
	FlushNow bool          `json:"flush_now,omitempty"` // an immediate-flush rule or a flush word matched
	Cancel   bool          `json:"cancel,omitempty"`    // a cancel word: drop the buffer and the message
}

// Encode is the envelope's queue body.
func (e Envelope) Encode() ([]byte, error) {
	b, err := jsonenc.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode envelope %s/%s: %w", e.Key, e.Message.ID, err)
	}
	return b, nil
}

// Decode reads a queue body. An error means the body can never be processed
// (a poison message).
func Decode(body []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return Envelope{}, fmt.Errorf("decode envelope: %w", err)
	}
	switch {
	case e.Key == "":
		return Envelope{}, errors.New("decode envelope: key is required")
	case IsControl(e.Kind):
		return e, nil
	case e.Kind != KindMessage:
		return Envelope{}, fmt.Errorf("decode envelope: unknown kind %q", e.Kind)
	case e.Message.ID == "":
		return Envelope{}, errors.New("decode envelope: message.id is required")
	}
	if len(e.Message.Metadata) == 0 {
		e.Message.Metadata = json.RawMessage("{}")
	}
	return e, nil
}

// generic is the seed's payload, extended (the README's "POST /webhook").
type generic struct {
	UniqueID  json.RawMessage `json:"unique_id"`
	Message   json.RawMessage `json:"message"`
	MessageID json.RawMessage `json:"message_id"`
	Timestamp json.RawMessage `json:"timestamp"`
	Metadata  json.RawMessage `json:"metadata"`
}

// ParseGeneric reads a POST /webhook body. receivedAt is the time of receipt;
// newID names a message that comes without message_id.
func ParseGeneric(body []byte, receivedAt time.Time, newID func() string) (Envelope, error) {
	trimmed, err := ObjectBody(body)
	if err != nil {
		return Envelope{}, err
	}
	var p generic
	if err := json.Unmarshal(trimmed, &p); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	key, err := identifier("unique_id", p.UniqueID, MaxKeyBytes)
	if err != nil {
		return Envelope{}, err
	}
	if key == "" {
		return Envelope{}, fieldErr("unique_id", "is required")
	}
	if p := reservedPrefix(key); p != "" {
		return Envelope{}, fieldErr("unique_id", "must not start with "+strconv.Quote(p)+": that prefix is the key space of a provider")
	}
	text, err := messageText(p.Message)
	if err != nil {
		return Envelope{}, err
	}
	id, err := identifier("message_id", p.MessageID, MaxIDBytes)
	if err != nil {
		return Envelope{}, err
	}
	if id == "" {
		id = newID()
	}
	ts, err := Timestamp(p.Timestamp)
	if err != nil {
		return Envelope{}, err
	}
	meta, err := metadata(p.Metadata)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{Key: key, Message: batch.Message{
		ID:         id,
		Text:       text,
		Type:       "text",
		ReceivedAt: batch.FormatTime(receivedAt),
		Timestamp:  ts,
		Source:     "generic",
		Metadata:   meta,
	}}, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// identifier reads a string or integer id; "" when absent.
func identifier(field string, raw json.RawMessage, max int) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fieldErr(field, "must be a string")
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if _, err := strconv.ParseInt(string(raw), 10, 64); err != nil {
			return "", fieldErr(field, "must be a string or an integer")
		}
		s = string(raw)
	default:
		return "", fieldErr(field, "must be a string or an integer")
	}
	if strings.TrimSpace(s) == "" {
		return "", nil
	}
	if err := CheckIdentifier(field, s, max); err != nil {
		return "", err
	}
	return s, nil
}

// ObjectBody checks that body is valid UTF-8 holding a JSON object and
// returns it trimmed; anything else is ErrMalformed.
func ObjectBody(body []byte) ([]byte, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: body must be a JSON object", ErrMalformed)
	}
	return trimmed, nil
}

// CheckIdentifier applies the limits of a conversation key or message id
// (limit bytes, valid UTF-8, no control characters) to s, a FieldError
// naming field when it breaks one.
func CheckIdentifier(field, s string, limit int) error {
	switch {
	case len(s) > limit:
		return fieldErr(field, fmt.Sprintf("must be at most %d bytes", limit))
	case !utf8.ValidString(s):
		return fieldErr(field, "must be valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fieldErr(field, "must not contain control characters")
	}
	return nil
}

func messageText(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", fieldErr("message", "is required")
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fieldErr("message", "must be a string")
	}
	if strings.TrimSpace(s) == "" {
		return "", fieldErr("message", "must not be empty")
	}
	return s, nil
}

// Timestamp reads an optional provider timestamp: an RFC 3339 string, or Unix
// seconds as a number or numeric string (values past year 5000 are taken as
// milliseconds). It returns the batch form ("" when absent).
func Timestamp(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fieldErr("timestamp", "must be RFC 3339 or Unix seconds")
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return batch.FormatTime(t), nil
		}
	} else {
		s = string(raw)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return "", fieldErr("timestamp", "must be RFC 3339 or Unix seconds")
	}
	if f > 1e11 { // milliseconds
		f /= 1000
	}
	if f > 1e11 {
		return "", fieldErr("timestamp", "is out of range")
	}
	sec, frac := math.Modf(f)
	return batch.FormatTime(time.Unix(int64(sec), int64(frac*1e9))), nil
}

func metadata(raw json.RawMessage) (json.RawMessage, error) {
	if isNull(raw) {
		return json.RawMessage("{}"), nil
	}
	if raw[0] != '{' {
		return nil, fieldErr("metadata", "must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fieldErr("metadata", "must be a JSON object")
	}
	return buf.Bytes(), nil
}
