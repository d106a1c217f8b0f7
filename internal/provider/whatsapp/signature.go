package whatsapp

import (
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/lullhq/lull/internal/hmacsig"
)

// SignatureHeader is the header Meta signs every POST with.
const SignatureHeader = "X-Hub-Signature-256"

// ErrSignature means a POST is not signed with a known app secret.
var ErrSignature = errors.New("whatsapp: invalid signature")

// ErrVerifyToken means a GET handshake is refused.
var ErrVerifyToken = errors.New("whatsapp: verification refused")

// VerifySignature checks header (X-Hub-Signature-256) against the raw body,
// exactly as received, under each app secret in turn (several Meta apps may
// share one callback URL). The comparison is constant-time.
func VerifySignature(body []byte, header string, secrets ...string) error {
	if err := hmacsig.Verify(body, header, secrets...); err != nil {
		return fmt.Errorf("%w: %s %w", ErrSignature, SignatureHeader, err)
	}
	return nil
}

// VerifyChallenge answers Meta's GET handshake: it returns challenge, to be
// sent back verbatim, when mode is "subscribe" and token equals want
// (constant-time). An empty want refuses every handshake.
func VerifyChallenge(mode, token, challenge, want string) (string, error) {
	if want == "" {
		return "", fmt.Errorf("%w: no verify token is configured", ErrVerifyToken)
	}
	if mode != "subscribe" {
		return "", fmt.Errorf("%w: hub.mode must be subscribe", ErrVerifyToken)
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		return "", fmt.Errorf("%w: hub.verify_token does not match", ErrVerifyToken)
	}
	return challenge, nil
}
