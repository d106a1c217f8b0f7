package ingest

import (
	"errors"
	"fmt"
)

// MaxMetadataDepth is how deeply a message's metadata may nest objects and
// arrays. The queue envelope wraps metadata in two more levels, and the
// worker must be able to decode whatever the api accepted.
const MaxMetadataDepth = 32

// ErrTooLarge means one message is larger than a batch may be
// (MAX_BATCH_BYTES); answered 413.
var ErrTooLarge = errors.New("ingest: message larger than MAX_BATCH_BYTES")

// Limits bound what one accepted message may carry.
type Limits struct {
	MetadataBytes int // METADATA_MAX_BYTES: compact metadata JSON, bytes (0 = no limit)
	MessageBytes  int // MAX_BATCH_BYTES: the message's queued form, bytes (0 = no limit)
}

// Prepare checks env against the limits and returns its queue body. Whatever
// Prepare accepts, the worker decodes: the body is decoded here once, so a
// 2xx never goes to a message the worker would dead-letter as poison.
func (l Limits) Prepare(env Envelope) ([]byte, error) {
	meta := env.Message.Metadata
	if l.MetadataBytes > 0 && len(meta) > l.MetadataBytes {
		return nil, fieldErr("metadata", fmt.Sprintf("must be at most %d bytes of JSON", l.MetadataBytes))
	}
	if depth(meta) > MaxMetadataDepth {
		return nil, fieldErr("metadata", fmt.Sprintf("must not nest deeper than %d levels", MaxMetadataDepth))
	}
	body, err := env.Encode()
	if err != nil {
		return nil, fieldErr("message", "cannot be encoded")
	}
	if l.MessageBytes > 0 && len(body) > l.MessageBytes {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(body), l.MessageBytes)
	}
	if _, err := Decode(body); err != nil {
		return nil, fieldErr("message", "cannot be queued: "+err.Error())
	}
	return body, nil
}

// depth is the deepest nesting of objects and arrays in the JSON text b.
func depth(b []byte) int {
	d, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}
