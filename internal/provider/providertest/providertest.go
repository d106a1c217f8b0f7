// Package providertest holds what the provider adapters' tests share:
// fixture loading, golden files and the properties every fuzz target checks.
package providertest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

var update = flag.Bool("update", false, "rewrite the golden files from the parsers' output")

// Received is the time of receipt every parser test uses.
var Received = time.Date(2026, 11, 25, 20, 0, 0, 123_000_000, time.UTC)

// Fixtures returns the fixture files matching pattern in testdata, by name
// without extension.
func Fixtures(t testing.TB, pattern string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no fixtures match testdata/%s", pattern)
	}
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))] = b
	}
	return out
}

// Fixture returns testdata/<file>, which must exist.
func Fixture(t testing.TB, file string) []byte {
	t.Helper()
	return Fixtures(t, file)[strings.TrimSuffix(file, filepath.Ext(file))]
}

// ParseFixture parses testdata/<file>, received at Received; parse must
// accept it.
func ParseFixture(t *testing.T, file string, parse func(body []byte, receivedAt time.Time) (provider.Result, error)) provider.Result {
	t.Helper()
	res, err := parse(Fixture(t, file), Received)
	require.NoError(t, err)
	return res
}

// GoldenFixtures parses every fixture matching pattern in testdata, each in
// a parallel subtest, received at Received: parse must accept it, the
// result must pass CheckResult and equal its golden file.
func GoldenFixtures(t *testing.T, pattern string, parse func(body []byte, receivedAt time.Time) (provider.Result, error)) {
	t.Helper()
	for name, body := range Fixtures(t, pattern) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res, err := parse(body, Received)
			require.NoError(t, err)
			CheckResult(t, res, err)
			Golden(t, name, res)
		})
	}
}

// FuzzParse fuzzes parse (bodies received at Received) with CheckResult,
// seeded with the fixtures matching pattern in testdata and with seeds.
func FuzzParse(f *testing.F, pattern string, parse func(body []byte, receivedAt time.Time) (provider.Result, error), seeds ...[]byte) {
	f.Helper()
	for _, body := range Fixtures(f, pattern) {
		f.Add(body)
	}
	for _, body := range seeds {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := parse(body, Received)
		CheckResult(t, res, err)
	})
}

// RequireVerdict asserts a verification's outcome: no error when ok, else
// an error that is refused.
func RequireVerdict(t *testing.T, name string, err error, ok bool, refused error) {
	t.Helper()
	if ok {
		require.NoError(t, err, name)
	} else {
		require.ErrorIs(t, err, refused, name)
	}
}

// Golden compares got, as indented JSON, with testdata/golden/<name>.json;
// go test -update rewrites the file instead.
func Golden(t *testing.T, name string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(want, b) {
		t.Errorf("%s differs from the parser's output:\n--- want\n%s\n--- got\n%s", path, want, b)
	}
}

// RequireRejected asserts that a parser refused its input as the test
// expects: nothing returned, and err is ingest.ErrMalformed when malformed,
// else an *ingest.FieldError naming field.
func RequireRejected(t *testing.T, name string, res provider.Result, err error, malformed bool, field string) {
	t.Helper()
	require.Error(t, err, name)
	require.Empty(t, res.Envelopes, name)
	if malformed {
		require.ErrorIs(t, err, ingest.ErrMalformed, name)
		return
	}
	var fe *ingest.FieldError
	require.True(t, errors.As(err, &fe), "%s: %v", name, err)
	require.Equal(t, field, fe.Field, name)
}

// CheckResult is the property every parser guarantees, fuzzed: an error is
// ingest.ErrMalformed or an *ingest.FieldError; every envelope has a key,
// every message an id, a valid JSON object as metadata, a timestamp that
// parses back, and survives the inbound queue's encoding.
func CheckResult(t *testing.T, res provider.Result, err error) {
	t.Helper()
	if err != nil {
		var fe *ingest.FieldError
		if !errors.Is(err, ingest.ErrMalformed) && !errors.As(err, &fe) {
			t.Fatalf("error is neither malformed nor a field error: %v", err)
		}
		if len(res.Envelopes) != 0 {
			t.Fatalf("envelopes returned with an error: %v", err)
		}
		return
	}
	for _, e := range res.Envelopes {
		if strings.TrimSpace(e.Key) == "" || len(e.Key) > ingest.MaxKeyBytes {
			t.Fatalf("bad key %q", e.Key)
		}
		if e.Kind == ingest.KindMessage {
			if strings.TrimSpace(e.Message.ID) == "" || len(e.Message.ID) > ingest.MaxIDBytes {
				t.Fatalf("bad message id %q", e.Message.ID)
			}
			if e.Message.Type == "" {
				t.Fatalf("message %q without a type", e.Message.ID)
			}
		} else if !ingest.IsControl(e.Kind) {
			t.Fatalf("unknown kind %q", e.Kind)
		}
		m := e.Message.Metadata
		var obj map[string]json.RawMessage
		if !json.Valid(m) || json.Unmarshal(m, &obj) != nil || obj == nil {
			t.Fatalf("metadata is not a JSON object: %s", m)
		}
		for _, ts := range []string{e.Message.Timestamp, e.Message.ReceivedAt} {
			if ts == "" {
				continue
			}
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Fatalf("time %q does not parse back: %v", ts, err)
			}
		}
		body, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ingest.Decode(body)
		if err != nil || back.Key != e.Key || back.Message.ID != e.Message.ID || back.Kind != e.Kind {
			t.Fatalf("envelope does not survive the queue: %v", err)
		}
	}
}

// SignJWT makes the HS256 token Evolution sends with a webhook's jwt_key,
// for tests of its verification.
func SignJWT(claims map[string]any, key []byte) (string, error) {
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign JWT: %w", err)
	}
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}
