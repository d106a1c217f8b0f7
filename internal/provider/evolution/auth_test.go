package evolution_test

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/provider/evolution"
	"github.com/lullhq/lull/internal/provider/providertest"
)

var (
	jwtKey = []byte("test_jwt_key")
	now    = time.Unix(1700000000, 0)
)

// The claims Evolution v2 signs into its webhook JWT (HS256, 10 minutes).
func evolutionClaims(iat int64) map[string]any {
	return map[string]any{"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}
}

func sign(t *testing.T, claims map[string]any, key []byte) string {
	t.Helper()
	tok, err := providertest.SignJWT(claims, key)
	require.NoError(t, err)
	return tok
}

// A token made by hand from RFC 7519's algorithm, independent of SignJWT:
// header {"alg":"HS256","typ":"JWT"}, claims {"iat":1700000000,"exp":1700000600,
// "app":"evolution","action":"webhook"}, HMAC-SHA256 under "test_jwt_key"
// (computed with Python's hmac).
const knownToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." +
	"eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMDYwMCwiYXBwIjoiZXZvbHV0aW9uIiwiYWN0aW9uIjoid2ViaG9vayJ9." +
	"hGkKwaXcjRHB9ws_-dAijXEcNcHekoB0_mmKmCDUJbE"

func TestVerifyJWT(t *testing.T) {
	t.Parallel()
	valid := sign(t, evolutionClaims(now.Unix()), jwtKey)
	parts := strings.Split(valid, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	hs512 := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS512","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	tests := []struct {
		name  string
		token string
		at    time.Time
		ok    bool
	}{
		{"known-good vector", knownToken, now, true},
		{"fresh", valid, now, true},
		{"just before exp", valid, now.Add(600 * time.Second), true},
		{"within the leeway", valid, now.Add(600*time.Second + evolution.Leeway), true},
		{"expired", valid, now.Add(600*time.Second + evolution.Leeway + time.Second), false},
		{"no exp", sign(t, map[string]any{"app": "evolution"}, jwtKey), now, false}, // could be replayed forever
		{"not yet valid", sign(t, map[string]any{"nbf": now.Unix() + 3600}, jwtKey), now, false},
		{"wrong key", sign(t, evolutionClaims(now.Unix()), []byte("other")), now, false},
		{"tampered claims", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":9999999999}`)) + "." + parts[2], now, false},
		{"alg none", none, now, false},
		{"alg HS512", hs512, now, false},
		{"two parts", parts[0] + "." + parts[1], now, false},
		{"empty", "", now, false},
		{"signature not base64url", parts[0] + "." + parts[1] + ".***", now, false},
		{"exp not a number", sign(t, map[string]any{"exp": "tomorrow"}, jwtKey), now, false},
		{"claims not an object", sign(t, nil, jwtKey), now, false},
	}
	for _, tt := range tests {
		err := evolution.VerifyJWT(tt.token, jwtKey, tt.at)
		providertest.RequireVerdict(t, tt.name, err, tt.ok, evolution.ErrAuth)
	}
}

func TestAuth_Verify(t *testing.T) {
	t.Parallel()
	token := sign(t, evolutionClaims(now.Unix()), jwtKey)
	headers := func(h map[string]string) func(string) string {
		return func(k string) string { return h[k] }
	}
	both := evolution.Auth{HeaderName: "X-Lull-Token", HeaderValue: "s3cret", JWTKey: jwtKey}
	tests := []struct {
		name string
		auth evolution.Auth
		h    map[string]string
		ok   bool
	}{
		{"nothing configured accepts", evolution.Auth{}, nil, true},
		{"header matches", evolution.Auth{HeaderName: "X-Lull-Token", HeaderValue: "s3cret"}, map[string]string{"X-Lull-Token": "s3cret"}, true},
		{"header wrong", evolution.Auth{HeaderName: "X-Lull-Token", HeaderValue: "s3cret"}, map[string]string{"X-Lull-Token": "s3cre"}, false},
		{"header missing", evolution.Auth{HeaderName: "X-Lull-Token", HeaderValue: "s3cret"}, nil, false},
		{"bearer JWT", evolution.Auth{JWTKey: jwtKey}, map[string]string{"Authorization": "Bearer " + token}, true},
		{"JWT without Bearer", evolution.Auth{JWTKey: jwtKey}, map[string]string{"Authorization": token}, false},
		{"JWT missing", evolution.Auth{JWTKey: jwtKey}, nil, false},
		{"both pass", both, map[string]string{"X-Lull-Token": "s3cret", "Authorization": "Bearer " + token}, true},
		{"both configured, JWT missing", both, map[string]string{"X-Lull-Token": "s3cret"}, false},
	}
	for _, tt := range tests {
		err := tt.auth.Verify(headers(tt.h), now)
		providertest.RequireVerdict(t, tt.name, err, tt.ok, evolution.ErrAuth)
	}
}

func TestParseHeader(t *testing.T) {
	t.Parallel()
	name, value, err := evolution.ParseHeader(" X-Lull-Token :  a:b ")
	require.NoError(t, err)
	require.Equal(t, "X-Lull-Token", name)
	require.Equal(t, "a:b", value)
	for _, bad := range []string{"", "novalue", ":v", "n:"} {
		_, _, err := evolution.ParseHeader(bad)
		require.Error(t, err, bad)
	}
}

func TestVerifyJWT_TimeClaimsAreBounded(t *testing.T) {
	t.Parallel()
	at := now.Unix()
	claims := func(kv ...any) map[string]any {
		m := map[string]any{"app": "evolution", "action": "webhook"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	maxAhead := int64((evolution.MaxExpiry + evolution.Leeway) / time.Second)
	tests := []struct {
		name   string
		claims map[string]any
		ok     bool
	}{
		{"exp 10^300", claims("exp", 1e300), false},
		{"exp -10^300", claims("exp", -1e300), false},
		{"exp beyond int64", claims("exp", json.Number("99999999999999999999")), false},
		{"exp max int64", claims("exp", int64(math.MaxInt64)), false},
		{"exp min int64", claims("exp", int64(math.MinInt64)), false},
		{"exp two hours ahead", claims("exp", at+7200), false},
		{"exp just past the cap", claims("exp", at+maxAhead+1), false},
		{"exp at the cap", claims("exp", at+maxAhead), true},
		{"exp an hour ahead", claims("exp", at+3600), true},
		{"exp with a fraction", claims("exp", float64(at)+600.5), false},
		{"exp in exponent form", claims("exp", json.Number("1.7000006e9")), false},
		{"exp as a numeric string", claims("exp", strconv.FormatInt(at+600, 10)), false},
		{"exp null", claims("exp", nil), false},
		{"iat in the future", claims("iat", at+120, "exp", at+600), false},
		{"iat within the skew", claims("iat", at+int64(evolution.Leeway/time.Second), "exp", at+600), true},
		{"iat 10^300", claims("iat", 1e300, "exp", at+600), false},
		{"iat not an integer", claims("iat", float64(at)+0.5, "exp", at+600), false},
		{"nbf 10^300", claims("nbf", 1e300, "exp", at+600), false},
		{"nbf past", claims("nbf", at-60, "exp", at+600), true},
	}
	for _, tt := range tests {
		err := evolution.VerifyJWT(sign(t, tt.claims, jwtKey), jwtKey, now)
		providertest.RequireVerdict(t, tt.name, err, tt.ok, evolution.ErrAuth)
	}
}
