// Package redact hides secrets in URLs before they reach a log line, an
// error or an admin view: the userinfo (user and password) and the value of
// every query parameter. It works on strings that do not parse as URLs too,
// because a password holding '#', '/' or '?' breaks url.Parse, and that is
// exactly when a configuration error prints the URL back.
package redact

import "strings"

// Mask replaces every hidden part.
const Mask = "xxxxx"

// URL returns raw with its userinfo and query values masked:
// amqp://guest:s3cret@host/ → amqp://xxxxx@host/,
// https://h/cb?token=abc&v=2 → https://h/cb?token=xxxxx&v=xxxxx.
// Fragments are dropped. A string without "://" is returned with only its
// query values masked.
func URL(raw string) string {
	rest, scheme := raw, ""
	if i := strings.Index(raw, "://"); i >= 0 {
		scheme, rest = raw[:i+3], raw[i+3:]
		// The userinfo ends at the last '@': a password may hold '@', '/',
		// '#' or '?', so nothing after "://" is trusted to end it earlier.
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			rest = Mask + rest[at:]
		}
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	path, query, ok := strings.Cut(rest, "?")
	if !ok {
		return scheme + path
	}
	return scheme + path + "?" + maskQuery(query)
}

// maskQuery keeps the parameter names of query, in order, and masks values.
func maskQuery(query string) string {
	parts := strings.Split(query, "&")
	for i, p := range parts {
		name, _, hasValue := strings.Cut(p, "=")
		if hasValue {
			parts[i] = name + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}
