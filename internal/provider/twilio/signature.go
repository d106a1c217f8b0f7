package twilio

import (
	"bytes"
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

// ErrForm means a correctly signed body is not a valid form encoding (some
// of it did not decode, so that part is not covered by the signature).
var ErrForm = errors.New("twilio: malformed form body")

// MaxParams bounds the form parameters Authenticate decodes. Twilio sends a
// few dozen (MediaUrl0-9 and MediaContentType0-9 included); a body with more
// cannot be a Twilio webhook, and is refused before any of it is decoded.
const MaxParams = 1000

// sigLen is the length of a well-formed X-Twilio-Signature: base64 (with
// padding) of a 20-byte HMAC-SHA1.
const sigLen = 28

// Signature is X-Twilio-Signature for a form POST, as Twilio documents it:
// base64(HMAC-SHA1(auth token, full URL + every parameter name, in sorted
// order, followed by each of its values, sorted)).
func Signature(authToken, fullURL string, params url.Values) string {
	return sign(authToken, fullURL, canonical(params))
}

// canonical is the signed form of params: every name, in sorted order,
// followed by each of its values, sorted.
func canonical(params url.Values) string {
	var b strings.Builder
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
	return b.String()
}

func sign(authToken, fullURL, canonicalParams string) string {
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(fullURL))
	mac.Write([]byte(canonicalParams))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Authenticate checks a webhook request before anything interprets it: body
// is the raw request body, sig its X-Twilio-Signature, fullURL the URL Twilio
// requested. It refuses, with ErrSignature, a missing or malformed signature
// and a body of more than MaxParams parameters before decoding any of it;
// otherwise it decodes the body's form parameters (url.ParseQuery: only the
// percent-decoding the signature is defined over) and checks the signature
// against them. Only a request that passes gets its parameters back; one that
// passes although part of the body did not decode is ErrForm.
func Authenticate(authToken, fullURL string, body []byte, sig string) (url.Values, error) {
	if authToken == "" {
		return nil, fmt.Errorf("%w: no auth token is configured", ErrSignature)
	}
	if sig == "" {
		return nil, fmt.Errorf("%w: %s is missing", ErrSignature, SignatureHeader)
	}
	if len(sig) != sigLen {
		return nil, fmt.Errorf("%w: %s is not a base64 HMAC-SHA1", ErrSignature, SignatureHeader)
	}
	if raw, err := base64.StdEncoding.DecodeString(sig); err != nil || len(raw) != sha1.Size {
		return nil, fmt.Errorf("%w: %s is not a base64 HMAC-SHA1", ErrSignature, SignatureHeader)
	}
	if n := bytes.Count(body, []byte("&")) + 1; n > MaxParams {
		return nil, fmt.Errorf("%w: %d form parameters, more than a Twilio webhook has (%d)", ErrSignature, n, MaxParams)
	}
	params, formErr := url.ParseQuery(string(body))
	if err := Verify(authToken, fullURL, params, sig); err != nil {
		return nil, err
	}
	if formErr != nil {
		return nil, fmt.Errorf("%w: %v", ErrForm, formErr)
	}
	return params, nil
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
	signed := canonical(params)
	for _, u := range urlVariants(fullURL) {
		want := sign(authToken, u, signed)
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
