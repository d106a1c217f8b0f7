// Package provider holds what the provider adapters (whatsapp, evolution,
// twilio) share: the Result of parsing a webhook, the checks every message id
// and conversation key passes, and the tolerant JSON types they decode with.
//
// The adapters are pure functions: raw bytes in, envelopes out. They never
// see HTTP; internal/httpapi verifies signatures with them, publishes what
// they return and maps their errors (ingest.ErrMalformed → 400,
// *ingest.FieldError → 422).
package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/lullhq/lull/internal/ingest"
)

// Result is what one webhook request carried.
type Result struct {
	// Envelopes to publish, in payload order: messages, and typing hints.
	Envelopes []ingest.Envelope `json:"envelopes"`
	// Ignored counts what the payload held that lull does not buffer, by
	// reason: "status", "from_me", "presence:available", "event:…",
	// "invalid" (see Problems) …
	Ignored map[string]int `json:"ignored,omitempty"`
	// Problems says why each "invalid" item was skipped (Meta batches only:
	// one bad message must not block the rest of the batch).
	Problems []string `json:"problems,omitempty"`
}

// Ignore counts one ignored item.
func (r *Result) Ignore(reason string) {
	if r.Ignored == nil {
		r.Ignored = map[string]int{}
	}
	r.Ignored[reason]++
}

// Skip counts one invalid item and records why.
func (r *Result) Skip(problem string) {
	r.Ignore("invalid")
	r.Problems = append(r.Problems, problem)
}

// IgnoredTotal is how many items were ignored, for every reason.
func (r Result) IgnoredTotal() int {
	n := 0
	for _, c := range r.Ignored {
		n += c
	}
	return n
}

// Decode reads a JSON object body into v. Bytes that are not a JSON object
// are ingest.ErrMalformed; a value of the wrong type is an
// *ingest.FieldError naming it.
func Decode(body []byte, v any) error {
	trimmed, err := ingest.ObjectBody(body)
	if err != nil {
		return err
	}
	return Unmarshal("body", trimmed, v)
}

// Unmarshal decodes one JSON value of a body that is already known to be
// valid JSON; field names it in errors.
func Unmarshal(field string, raw []byte, v any) error {
	err := json.Unmarshal(raw, v)
	if err == nil {
		return nil
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Errorf("%w: %v", ingest.ErrMalformed, err)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field != "" {
			field = field + "." + typ.Field
		}
		return &ingest.FieldError{Field: field, Problem: "must be a JSON " + jsonKind(typ.Type.Kind().String())}
	}
	return &ingest.FieldError{Field: field, Problem: err.Error()}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	case "string":
		return "string"
	default:
		return "number"
	}
}

// ID checks a provider message id: present, at most ingest.MaxIDBytes, no
// control characters (it is the dedupe key and the AMQP message id).
func ID(field, id string) (string, error) {
	if strings.TrimSpace(id) == "" {
		return "", &ingest.FieldError{Field: field, Problem: "is required"}
	}
	if err := ingest.CheckIdentifier(field, id, ingest.MaxIDBytes); err != nil {
		return "", err
	}
	return id, nil
}

// Key joins the parts of a conversation key with ":". Every part must be
// present; the key obeys the same limits as a generic unique_id.
func Key(field string, parts ...string) (string, error) {
	for _, p := range parts {
		if strings.TrimSpace(p) == "" {
			return "", &ingest.FieldError{Field: field, Problem: "is required"}
		}
	}
	key := strings.Join(parts, ":")
	if err := ingest.CheckIdentifier(field, key, ingest.MaxKeyBytes); err != nil {
		return "", err
	}
	return key, nil
}

// Timestamp reads a provider timestamp (Unix seconds as a number or a
// numeric string) into the batch form; "" when absent.
func Timestamp(field string, raw json.RawMessage) (string, error) {
	ts, err := ingest.Timestamp(raw)
	var fe *ingest.FieldError
	if errors.As(err, &fe) {
		return "", &ingest.FieldError{Field: field, Problem: fe.Problem}
	}
	return ts, err
}

// Truncate shortens s to at most n bytes without splitting a rune, for
// strings that end up in logs or counters.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
