// Package hmacsig signs and checks bodies the way both Meta
// (X-Hub-Signature-256) and lull's http sink (X-Lull-Signature) do:
// "sha256=" + lowercase hex HMAC-SHA256(secret, raw body).
package hmacsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// Prefix starts every signature.
const Prefix = "sha256="

// Why a signature does not verify.
var (
	ErrMissing   = errors.New("missing")
	ErrMalformed = errors.New("not sha256=<64 hex digits>")
	ErrMismatch  = errors.New("does not match the body")
)

// Sign is the signature of body under secret.
func Sign(secret string, body []byte) string {
	return Prefix + hex.EncodeToString(sum(secret, body))
}

// Verify checks header against the raw body, exactly as received, under
// each non-empty secret in turn, in constant time. It returns nil when one
// secret matches.
func Verify(body []byte, header string, secrets ...string) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrMissing
	}
	hexSum, ok := strings.CutPrefix(header, Prefix)
	if !ok {
		return ErrMalformed
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return ErrMalformed
	}
	for _, secret := range secrets {
		if secret != "" && hmac.Equal(sum(secret, body), got) {
			return nil
		}
	}
	return ErrMismatch
}

func sum(secret string, body []byte) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return mac.Sum(nil)
}
