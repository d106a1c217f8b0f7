package evolution_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/lullhq/lull/internal/provider/evolution"
	"github.com/lullhq/lull/internal/provider/providertest"
)

func FuzzParseEvolution(f *testing.F) {
	providertest.FuzzParse(f, "*.json", evolution.Parse, []byte(`{"event":"messages.upsert","instance":1,"data":{"key":{"id":2,"remoteJid":3},"messageTimestamp":{"low":-1,"high":-1}}}`))
}

func FuzzVerifyJWT(f *testing.F) {
	f.Add(knownToken, "test_jwt_key")
	f.Add("eyJhbGciOiJub25lIn0.e30.", "")
	f.Add("a.b.c", "k")
	f.Fuzz(func(t *testing.T, token, key string) {
		if evolution.VerifyJWT(token, []byte(key), now) != nil {
			return
		}
		// Accepted: it must be an HS256 token signed with key.
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token without three parts: %q", token)
		}
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted a token whose signature is not the HMAC: %q", token)
		}
	})
}

// FuzzVerifyJWTClaims signs arbitrary claims: whatever is accepted has an
// integer exp no more than MaxExpiry (plus Leeway) ahead and not expired.
func FuzzVerifyJWTClaims(f *testing.F) {
	f.Add(`{"iat":1700000000,"exp":1700000600}`)
	f.Add(`{"exp":1e300}`)
	f.Add(`{"exp":1700000600.5,"nbf":-1e308}`)
	f.Add(`{"exp":99999999999999999999,"iat":"x"}`)
	f.Fuzz(func(t *testing.T, claims string) {
		unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(claims))
		mac := hmac.New(sha256.New, jwtKey)
		mac.Write([]byte(unsigned))
		token := unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		if evolution.VerifyJWT(token, jwtKey, now) != nil {
			return
		}
		var c struct {
			Exp json.RawMessage `json:"exp"`
		}
		if err := json.Unmarshal([]byte(claims), &c); err != nil {
			t.Fatalf("accepted claims that are not JSON: %q", claims)
		}
		exp, err := strconv.ParseInt(string(c.Exp), 10, 64)
		if err != nil {
			t.Fatalf("accepted a non-integer exp: %q", claims)
		}
		lo := now.Add(-evolution.Leeway).Unix()
		hi := now.Add(evolution.MaxExpiry + evolution.Leeway).Unix()
		if exp < lo || exp > hi {
			t.Fatalf("accepted exp %d outside [%d, %d]", exp, lo, hi)
		}
	})
}
