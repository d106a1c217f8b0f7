package twilio

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // Twilio's signature is HMAC-SHA1 by definition.
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// SignatureHeader is the header Twilio signs every request with.
const SignatureHeader = "X-Twilio-Signature"

// ErrSignature means a request is not signed with the account's auth token.
var ErrSignature = errors.New("twilio: invalid signature")

// Signature is X-Twilio-Signature for a form POST (webhook-formats.md §3.2):
// base64(HMAC-SHA1(auth token, full URL + every parameter name, in sorted
// order, followed by each of its values, sorted)).
func Signature(authToken, fullURL string, params url.Values) string {
	var b strings.Builder
	b.WriteString(fullURL)
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		values := append([]string(nil), params[k]...)
		sort.Strings(values)
		for _, v := range values {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks sig against the URL Twilio requested and the form's
// parameters, constant-time. Like Twilio's own validators it accepts the
// URL with or without an explicit default port (:443, :80), because
// Twilio's side is not consistent about it.
func Verify(authToken, fullURL string, params url.Values, sig string) error {
	if authToken == "" {
		return fmt.Errorf("%w: no auth token is configured", ErrSignature)
	}
	if sig == "" {
		return fmt.Errorf("%w: %s is missing", ErrSignature, SignatureHeader)
	}
	for _, u := range urlVariants(fullURL) {
		want := Signature(authToken, u, params)
		if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: %s does not match", ErrSignature, SignatureHeader)
}

// urlVariants is u as given, plus u with its default port added (when it
// has none) or removed (when it has it).
func urlVariants(u string) []string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return []string{u}
	}
	port := map[string]string{"https": "443", "http": "80"}[strings.ToLower(scheme)]
	if port == "" {
		return []string{u}
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host, tail := rest[:end], rest[end:]
	if h, ok := strings.CutSuffix(host, ":"+port); ok {
		return []string{u, scheme + "://" + h + tail}
	}
	if strings.HasSuffix(host, "]") || !strings.Contains(host, ":") {
		return []string{u, scheme + "://" + host + ":" + port + tail}
	}
	return []string{u}
}
