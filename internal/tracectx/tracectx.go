// Package tracectx reads the W3C Trace Context header lull passes through:
// a traceparent received with a webhook is kept with each of its messages
// and sent on with the batch, so a message can be followed from the
// provider to the bot's trace (https://www.w3.org/TR/trace-context/).
package tracectx

import "strings"

// Header is the name of the W3C trace context header.
const Header = "traceparent"

// maxLen bounds a kept traceparent: version 00 is 55 characters; a later
// version may append fields, which lull keeps up to this length.
const maxLen = 256

// Parse returns the traceparent h, normalized (surrounding spaces trimmed),
// and whether it is valid: version-traceid-parentid-flags in lowercase hex,
// neither id all zeros, version not ff; version 00 exactly 55 characters, a
// later version at least that, with anything after the flags starting with
// "-" and printable. An invalid header is ignored by the caller, as the specification
// asks, never refused.
func Parse(h string) (string, bool) {
	h = strings.TrimSpace(h)
	if len(h) < 55 || len(h) > maxLen {
		return "", false
	}
	if h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return "", false
	}
	version, traceID, parentID, flags := h[0:2], h[3:35], h[36:52], h[53:55]
	if !hex(version) || !hex(traceID) || !hex(parentID) || !hex(flags) || version == "ff" {
		return "", false
	}
	if zeros(traceID) || zeros(parentID) {
		return "", false
	}
	if version == "00" && len(h) != 55 {
		return "", false
	}
	if len(h) > 55 && (h[55] != '-' || !printable(h[56:])) {
		return "", false
	}
	return h, true
}

// TraceID is the trace id of a valid traceparent ("" otherwise), for logs.
func TraceID(traceparent string) string {
	if _, ok := Parse(traceparent); !ok {
		return ""
	}
	return traceparent[3:35]
}

func hex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// printable: visible ASCII and spaces only, so that a kept value is always a
// valid HTTP and AMQP header value.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func zeros(s string) bool { return strings.Trim(s, "0") == "" }
