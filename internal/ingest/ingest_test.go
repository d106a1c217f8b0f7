package ingest_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/ingest"
)

var received = time.Date(2026, 11, 25, 20, 0, 0, 123_000_000, time.UTC)

func fixedID() string { return "assigned-id" }

func TestParseGeneric_Valid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want ingest.Envelope
	}{
		{"the seed's payload", `{"unique_id":"123","message":"teste"}`,
			env("123", "assigned-id", "teste", "", `{}`)},
		{"every optional field", `{"unique_id":"5511999990000","message":"oi","message_id":"wamid.1","timestamp":"2026-11-25T19:59:59-03:00","metadata":{"a": [1, 2]}}`,
			env("5511999990000", "wamid.1", "oi", "2026-11-25T22:59:59.000Z", `{"a":[1,2]}`)},
		{"numeric ids", `{"unique_id":5511999990000,"message":"oi","message_id":42}`,
			env("5511999990000", "42", "oi", "", `{}`)},
		{"unix seconds", `{"unique_id":"u","message":"m","timestamp":1764100800}`,
			env("u", "assigned-id", "m", "2025-11-25T20:00:00.000Z", `{}`)},
		{"unix seconds as a string", `{"unique_id":"u","message":"m","timestamp":"1764100800.5"}`,
			env("u", "assigned-id", "m", "2025-11-25T20:00:00.500Z", `{}`)},
		{"unix milliseconds", `{"unique_id":"u","message":"m","timestamp":1764100800250}`,
			env("u", "assigned-id", "m", "2025-11-25T20:00:00.250Z", `{}`)},
		{"nulls are absent", `{"unique_id":"u","message":"m","message_id":null,"timestamp":null,"metadata":null}`,
			env("u", "assigned-id", "m", "", `{}`)},
		{"empty message_id is assigned", `{"unique_id":"u","message":"m","message_id":""}`,
			env("u", "assigned-id", "m", "", `{}`)},
		{"hostile but valid key", `{"unique_id":"a{b}:c d ünï 🎉","message":"m"}`,
			env("a{b}:c d ünï 🎉", "assigned-id", "m", "", `{}`)},
		{"unknown fields are ignored", `{"unique_id":"u","message":"m","extra":true}`,
			env("u", "assigned-id", "m", "", `{}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ingest.ParseGeneric([]byte(tt.body), received, fixedID)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func env(key, id, text, ts, meta string) ingest.Envelope {
	e := ingest.Envelope{Key: key}
	e.Message.ID = id
	e.Message.Text = text
	e.Message.Type = "text"
	e.Message.ReceivedAt = "2026-11-25T20:00:00.123Z"
	e.Message.Timestamp = ts
	e.Message.Source = "generic"
	e.Message.Metadata = json.RawMessage(meta)
	return e
}

func TestParseGeneric_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		malformed bool   // 400
		field     string // 422
	}{
		{"not JSON", `{"unique_id":`, true, ""},
		{"empty body", ``, true, ""},
		{"an array", `[{"unique_id":"u","message":"m"}]`, true, ""},
		{"trailing garbage", `{"unique_id":"u","message":"m"} x`, true, ""},
		{"invalid UTF-8", "{\"unique_id\":\"u\xff\",\"message\":\"m\"}", true, ""},
		{"missing unique_id", `{"message":"m"}`, false, "unique_id"},
		{"empty unique_id", `{"unique_id":"  ","message":"m"}`, false, "unique_id"},
		{"unique_id an object", `{"unique_id":{},"message":"m"}`, false, "unique_id"},
		{"unique_id a float", `{"unique_id":1.5,"message":"m"}`, false, "unique_id"},
		{"unique_id too long", `{"unique_id":"` + strings.Repeat("x", ingest.MaxKeyBytes+1) + `","message":"m"}`, false, "unique_id"},
		{"unique_id with a newline", `{"unique_id":"a\nb","message":"m"}`, false, "unique_id"},
		{"missing message", `{"unique_id":"u"}`, false, "message"},
		{"empty message", `{"unique_id":"u","message":""}`, false, "message"},
		{"blank message", `{"unique_id":"u","message":" \n\t"}`, false, "message"},
		{"message a number", `{"unique_id":"u","message":5}`, false, "message"},
		{"message_id an array", `{"unique_id":"u","message":"m","message_id":[]}`, false, "message_id"},
		{"message_id too long", `{"unique_id":"u","message":"m","message_id":"` + strings.Repeat("x", ingest.MaxIDBytes+1) + `"}`, false, "message_id"},
		{"timestamp not a time", `{"unique_id":"u","message":"m","timestamp":"yesterday"}`, false, "timestamp"},
		{"timestamp negative", `{"unique_id":"u","message":"m","timestamp":-5}`, false, "timestamp"},
		{"timestamp a bool", `{"unique_id":"u","message":"m","timestamp":true}`, false, "timestamp"},
		{"timestamp out of range", `{"unique_id":"u","message":"m","timestamp":1e300}`, false, "timestamp"},
		{"metadata an array", `{"unique_id":"u","message":"m","metadata":[1]}`, false, "metadata"},
		{"metadata a string", `{"unique_id":"u","message":"m","metadata":"x"}`, false, "metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ingest.ParseGeneric([]byte(tt.body), received, fixedID)
			require.Error(t, err)
			if tt.malformed {
				require.ErrorIs(t, err, ingest.ErrMalformed)
				return
			}
			var fe *ingest.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.field, fe.Field)
			require.Contains(t, err.Error(), tt.field)
		})
	}
}

func TestEnvelope_RoundTrip(t *testing.T) {
	t.Parallel()
	e, err := ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"m","metadata":{"k":"v"}}`), received, fixedID)
	require.NoError(t, err)
	body, err := e.Encode()
	require.NoError(t, err)
	got, err := ingest.Decode(body)
	require.NoError(t, err)
	require.Equal(t, e, got)
}

func TestDecode_Poison(t *testing.T) {
	t.Parallel()
	for _, body := range []string{``, `nope`, `{}`, `{"key":"u","message":{}}`, `{"key":"","message":{"id":"x"}}`, `[1]`} {
		_, err := ingest.Decode([]byte(body))
		require.Error(t, err, "%q", body)
	}
}

func FuzzParseGeneric(f *testing.F) {
	for _, s := range []string{
		`{"unique_id":"123","message":"teste"}`,
		`{"unique_id":5511999990000,"message":"oi","message_id":"wamid.1","timestamp":"2026-11-25T19:59:59-03:00","metadata":{"a":1}}`,
		`{"unique_id":"u","message":"m","timestamp":1764100800250}`,
		`{"unique_id":"a{b}","message":"m","timestamp":"1e3"}`,
		`[]`, `{`, `null`, "{\"unique_id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := ingest.ParseGeneric(body, received, fixedID)
		if err != nil {
			var fe *ingest.FieldError
			if !errors.Is(err, ingest.ErrMalformed) && !errors.As(err, &fe) {
				t.Fatalf("error neither malformed nor a field error: %v", err)
			}
			return
		}
		if strings.TrimSpace(e.Key) == "" || len(e.Key) > ingest.MaxKeyBytes || !utf8.ValidString(e.Key) {
			t.Fatalf("accepted bad key %q", e.Key)
		}
		if strings.TrimSpace(e.Message.Text) == "" || e.Message.ID == "" {
			t.Fatalf("accepted empty message or id: %+v", e)
		}
		if !json.Valid(e.Message.Metadata) || e.Message.Metadata[0] != '{' {
			t.Fatalf("metadata not an object: %s", e.Message.Metadata)
		}
		if e.Message.Timestamp != "" {
			if _, err := time.Parse(time.RFC3339Nano, e.Message.Timestamp); err != nil {
				t.Fatalf("timestamp %q does not parse back: %v", e.Message.Timestamp, err)
			}
		}
		body2, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ingest.Decode(body2)
		if err != nil || back.Key != e.Key || back.Message.ID != e.Message.ID || back.Message.Text != e.Message.Text {
			t.Fatalf("envelope does not round-trip: %v", err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"key":"u","message":{"id":"x","text":"m","metadata":{}}}`))
	f.Add([]byte(`{"key":"u","message":{"id":"x","metadata":null}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := ingest.Decode(body)
		if err == nil && (e.Key == "" || e.Message.ID == "") {
			t.Fatalf("decoded an envelope without key or id: %+v", e)
		}
	})
}

func BenchmarkParseGeneric(b *testing.B) {
	body := []byte(`{"unique_id":"5511999990000","message":"queria saber do meu pedido","message_id":"wamid.HBgM","timestamp":1764100800,"metadata":{"name":"Ana"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ingest.ParseGeneric(body, received, fixedID); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRuleSet_PerSourceOverridesTheDefault(t *testing.T) {
	t.Parallel()
	def, err := ingest.ParseRules(config.Defaults().ImmediateFlush)
	require.NoError(t, err)
	media, err := ingest.ParseRules([]string{"media"})
	require.NoError(t, err)
	none, err := ingest.ParseRules([]string{"none"})
	require.NoError(t, err)
	rs := ingest.RuleSet{Default: def, BySource: map[string]ingest.Rules{"whatsapp": media, "twilio": none}}
	flushes := func(source, typ, text string, withMedia bool) bool {
		e := ingest.Envelope{Key: "k", Message: env("k", "id", text, "", "{}").Message}
		e.Message.Source, e.Message.Type = source, typ
		if withMedia {
			e.Message.Media = &batch.Media{ID: "m"}
		}
		rs.Apply(&e)
		return e.FlushNow
	}
	require.True(t, flushes("generic", "text", "/start", false), "default: command")
	require.True(t, flushes("evolution", "interactive", "Sim", false), "default: interactive")
	require.False(t, flushes("generic", "image", "foto", true), "default: not media")
	require.True(t, flushes("whatsapp", "image", "foto", true), "whatsapp: media")
	require.False(t, flushes("whatsapp", "text", "/start", false), "whatsapp: only media")
	require.False(t, flushes("twilio", "interactive", "Sim", false), "twilio: none")
	_, err = ingest.ParseRules([]string{"sometimes"})
	require.Error(t, err)
}
