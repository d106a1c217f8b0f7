package evolution

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrAuth means a webhook request failed the configured authentication.
var ErrAuth = errors.New("evolution: unauthorized")

// Leeway is the clock skew allowed when checking a JWT's exp, nbf and iat.
const Leeway = 30 * time.Second

// MaxExpiry is how far in the future a JWT's exp may lie (give or take
// Leeway). Evolution sets it ten minutes after issue; a token valid for much
// longer, as from a leaked key, could be replayed for that long.
const MaxExpiry = time.Hour

// Auth is the optional authentication of Evolution's webhooks
// (as Evolution v2 offers them): a static header configured on the instance's
// webhook (EVOLUTION_HEADER), and/or the JWT Evolution sends as
// "Authorization: Bearer …" when the webhook's headers hold a jwt_key
// (EVOLUTION_JWT_KEY). The zero Auth accepts everything.
type Auth struct {
	HeaderName  string
	HeaderValue string
	JWTKey      []byte
}

// errHeaderFormat is ParseHeader's error. It does not repeat the header:
// its value is a secret.
var errHeaderFormat = errors.New(`must be "Name: value"`)

// ParseHeader reads EVOLUTION_HEADER, "Name: value": the one check of its
// form (config reports its error, naming the variable).
func ParseHeader(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" || value == "" {
		return "", "", errHeaderFormat
	}
	return name, value, nil
}

// Enabled reports whether any check is configured.
func (a Auth) Enabled() bool { return a.HeaderName != "" || len(a.JWTKey) > 0 }

// Verify checks a request's headers (header looks one up by name) at time
// now. Both checks must pass when both are configured.
func (a Auth) Verify(header func(name string) string, now time.Time) error {
	if a.HeaderName != "" {
		got := header(a.HeaderName)
		if subtle.ConstantTimeCompare([]byte(got), []byte(a.HeaderValue)) != 1 {
			return fmt.Errorf("%w: header %s is missing or wrong", ErrAuth, a.HeaderName)
		}
	}
	if len(a.JWTKey) > 0 {
		token, ok := strings.CutPrefix(header("Authorization"), "Bearer ")
		if !ok {
			return fmt.Errorf("%w: Authorization: Bearer <JWT> is missing", ErrAuth)
		}
		if err := VerifyJWT(strings.TrimSpace(token), a.JWTKey, now); err != nil {
			return err
		}
	}
	return nil
}

// VerifyJWT checks an HS256 JSON Web Token signed with key: the header must
// say alg HS256 (nothing else is accepted, "none" included), the signature
// must match (constant-time), exp is required (Evolution always sets it,
// ten minutes after issue; a token without one could be replayed forever)
// and, like nbf when present, must hold at now give or take Leeway; exp may
// lie at most MaxExpiry ahead, and iat, when present, not in the future.
// exp, nbf and iat must be integer NumericDates (Unix seconds, as Evolution
// writes them): a fraction, an exponent, a string or a value beyond int64
// is refused, never rounded.
func VerifyJWT(token string, key []byte, now time.Time) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: JWT must have three parts", ErrAuth)
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodePart(parts[0], &header); err != nil {
		return fmt.Errorf("%w: JWT header: %v", ErrAuth, err)
	}
	if header.Alg != "HS256" {
		return fmt.Errorf("%w: JWT alg %q is not HS256", ErrAuth, header.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("%w: JWT signature is not base64url", ErrAuth)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return fmt.Errorf("%w: JWT signature does not match", ErrAuth)
	}
	var claims struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return fmt.Errorf("%w: JWT claims: %v", ErrAuth, err)
	}
	if claims.Exp == nil {
		return fmt.Errorf("%w: JWT has no exp", ErrAuth)
	}
	exp, err := numericDate("exp", claims.Exp)
	if err != nil {
		return err
	}
	// Compared in whole seconds first, so no time arithmetic ever sees an
	// absurd value: nowSec + a few thousand cannot overflow.
	nowSec, leeway := now.Unix(), int64(Leeway/time.Second)
	if exp > nowSec+int64(MaxExpiry/time.Second)+leeway {
		return fmt.Errorf("%w: JWT exp is more than %s ahead", ErrAuth, MaxExpiry)
	}
	if now.After(time.Unix(exp, 0).Add(Leeway)) {
		return fmt.Errorf("%w: JWT expired", ErrAuth)
	}
	if claims.Nbf != nil {
		nbf, err := numericDate("nbf", claims.Nbf)
		if err != nil {
			return err
		}
		if nbf > nowSec+leeway {
			return fmt.Errorf("%w: JWT not valid yet", ErrAuth)
		}
	}
	if claims.Iat != nil {
		iat, err := numericDate("iat", claims.Iat)
		if err != nil {
			return err
		}
		if iat > nowSec+leeway {
			return fmt.Errorf("%w: JWT issued in the future", ErrAuth)
		}
	}
	return nil
}

// numericDate reads claim name as an integer NumericDate (Unix seconds).
func numericDate(name string, raw json.RawMessage) (int64, error) {
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: JWT %s is not an integer NumericDate", ErrAuth, name)
	}
	return v, nil
}

func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return errors.New("not base64url")
	}
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, v) != nil {
		return errors.New("not a JSON object with the expected types")
	}
	return nil
}
