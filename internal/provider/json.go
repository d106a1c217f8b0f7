package provider

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/lullhq/lull/internal/jsonenc"
)

// Str is a JSON string that also takes a number (as its literal text) or
// null (""): providers are not always consistent about ids.
type Str string

// UnmarshalJSON implements json.Unmarshaler.
func (s *Str) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		return nil
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = Str(v)
	case b[0] == 'n':
		*s = ""
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*s = Str(b)
	default:
		return &json.UnmarshalTypeError{Value: "non-string", Type: reflect.TypeFor[string]()}
	}
	return nil
}

// String returns s as a string.
func (s Str) String() string { return string(s) }

// Num is a finite JSON number that also takes a numeric string; Valid is
// false when it was absent, null or "".
type Num struct {
	Value float64
	Valid bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *Num) UnmarshalJSON(b []byte) error {
	*n = Num{}
	if len(b) == 0 || b[0] == 'n' {
		return nil
	}
	text := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		text = strings.TrimSpace(text)
		if text == "" {
			return nil
		}
	} else if b[0] != '-' && (b[0] < '0' || b[0] > '9') {
		return &json.UnmarshalTypeError{Value: "non-number", Type: reflect.TypeFor[float64]()}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return &json.UnmarshalTypeError{Value: "string " + strconv.Quote(Truncate(text, 32)), Type: reflect.TypeFor[float64]()}
	}
	*n = Num{Value: f, Valid: true}
	return nil
}

// ParseNum reads a numeric string (Twilio's form values); "" is not Valid.
func ParseNum(s string) (Num, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Num{}, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return Num{}, fmt.Errorf("%q is not a number", Truncate(s, 32))
	}
	return Num{Value: f, Valid: true}, nil
}

// Bytes renders a binary field the way JavaScript may have serialized it —
// a string (kept as is), a Uint8Array ({"0":12,"1":34,…}) or an array of
// numbers — as a string; base64 (standard) for the binary forms, "" when it
// is none of these.
func Bytes(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	case '[':
		var a []byte
		var nums []int
		if json.Unmarshal(raw, &nums) != nil {
			return ""
		}
		for _, v := range nums {
			if v < 0 || v > 255 {
				return ""
			}
			a = append(a, byte(v))
		}
		return base64.StdEncoding.EncodeToString(a)
	case '{':
		var m map[string]int
		if json.Unmarshal(raw, &m) != nil || len(m) == 0 || len(m) > 1<<16 {
			return ""
		}
		a := make([]byte, len(m))
		for k, v := range m {
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(m) || v < 0 || v > 255 {
				return ""
			}
			a[i] = byte(v)
		}
		return base64.StdEncoding.EncodeToString(a)
	}
	return ""
}

// Meta builds a message's Metadata: a JSON object without empty values.
type Meta map[string]any

// Str sets k to v unless v is "".
func (m Meta) Str(k, v string) {
	if v != "" {
		m[k] = v
	}
}

// True sets k to true when v is.
func (m Meta) True(k string, v bool) {
	if v {
		m[k] = true
	}
}

// Num sets k to n when n is Valid.
func (m Meta) Num(k string, n Num) {
	if n.Valid {
		m[k] = n.Value
	}
}

// Raw sets k to a JSON value taken from a payload unless it is absent or
// null. raw must be valid JSON (it is, when it came out of json.Unmarshal).
func (m Meta) Raw(k string, raw json.RawMessage) {
	if len(raw) != 0 && string(raw) != "null" {
		m[k] = raw
	}
}

// Any sets k to v unless v is nil (a nil map or slice included).
func (m Meta) Any(k string, v any) {
	if v == nil {
		return
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return
		}
	}
	m[k] = v
}

// JSON is the metadata object ("{}" when empty), keys sorted.
func (m Meta) JSON() json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage("{}")
	}
	b, err := jsonenc.Marshal(map[string]any(m))
	if err != nil {
		// Only a payload value that is not valid JSON can get here, and
		// those never leave json.Unmarshal; keep what still encodes.
		safe := Meta{}
		for k, v := range m {
			if _, err := jsonenc.Marshal(v); err == nil {
				safe[k] = v
			}
		}
		if b, err = jsonenc.Marshal(map[string]any(safe)); err != nil {
			return json.RawMessage("{}")
		}
	}
	return b
}

// JoinNonEmpty joins the non-empty parts with sep.
func JoinNonEmpty(sep string, parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// IsJSON reports whether s is a JSON object or array.
func IsJSON(s string) bool {
	t := strings.TrimSpace(s)
	return t != "" && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(t))
}
