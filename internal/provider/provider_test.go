package provider_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

func TestStrAndNum_TolerateProviderSpellings(t *testing.T) {
	t.Parallel()
	var v struct {
		S provider.Str `json:"s"`
		N provider.Num `json:"n"`
	}
	for in, want := range map[string][2]any{
		`{"s":"a","n":1.5}`:    {"a", provider.Num{Value: 1.5, Valid: true}},
		`{"s":12,"n":"-2"}`:    {"12", provider.Num{Value: -2, Valid: true}},
		`{"s":null,"n":null}`:  {"", provider.Num{}},
		`{"n":""}`:             {"", provider.Num{}},
		`{"s":"x","n":" 3 "}`:  {"x", provider.Num{Value: 3, Valid: true}},
		`{"s":"","n":0}`:       {"", provider.Num{Value: 0, Valid: true}},
		`{"s":"é","n":1e-300}`: {"é", provider.Num{Value: 1e-300, Valid: true}},
	} {
		v.S, v.N = "", provider.Num{}
		require.NoError(t, json.Unmarshal([]byte(in), &v), in)
		require.Equal(t, want[0], v.S.String(), in)
		require.Equal(t, want[1], v.N, in)
	}
	for _, in := range []string{`{"s":true}`, `{"s":{}}`, `{"n":"north"}`, `{"n":"NaN"}`, `{"n":"1e400"}`, `{"n":[1]}`} {
		require.Error(t, json.Unmarshal([]byte(in), &v), in)
	}
}

func TestBytes_RendersJavaScriptBinaryAsBase64(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`"already-a-string"`:    "already-a-string",
		`{"0":1,"1":2,"2":255}`: "AQL/",
		`[1,2,255]`:             "AQL/",
		`{"0":1,"5":2}`:         "", // sparse: not a byte array
		`[256]`:                 "",
		`{"0":-1}`:              "",
		`true`:                  "",
		``:                      "",
	} {
		require.Equal(t, want, provider.Bytes(json.RawMessage(in)), in)
	}
}

func TestMeta_LeavesOutEmptyValues(t *testing.T) {
	t.Parallel()
	m := provider.Meta{}
	require.JSONEq(t, `{}`, string(m.JSON()))
	m.Str("empty", "")
	m.True("no", false)
	m.Num("unset", provider.Num{})
	m.Raw("null", json.RawMessage("null"))
	m.Any("nil map", map[string]string(nil))
	m.Any("nil slice", []string(nil))
	require.JSONEq(t, `{}`, string(m.JSON()))
	m.Str("s", "v")
	m.True("yes", true)
	m.Num("zero", provider.Num{Valid: true})
	m.Raw("raw", json.RawMessage(`{"a": [1, 2]}`))
	m.Any("list", []string{"x"})
	require.Equal(t, `{"list":["x"],"raw":{"a":[1,2]},"s":"v","yes":true,"zero":0}`, string(m.JSON()))
}

func TestIDAndKey_ObeyTheGenericLimits(t *testing.T) {
	t.Parallel()
	id, err := provider.ID("id", "wamid.X")
	require.NoError(t, err)
	require.Equal(t, "wamid.X", id)
	key, err := provider.Key("key", "bot-01", "5511@s.whatsapp.net")
	require.NoError(t, err)
	require.Equal(t, "bot-01:5511@s.whatsapp.net", key)

	for name, err := range map[string]error{
		"empty id":       second(provider.ID("id", " ")),
		"long id":        second(provider.ID("id", strings.Repeat("x", ingest.MaxIDBytes+1))),
		"control in id":  second(provider.ID("id", "a\tb")),
		"bad UTF-8 id":   second(provider.ID("id", "a\xffb")),
		"empty key part": second(provider.Key("key", "bot", "")),
		"long key":       second(provider.Key("key", "bot", strings.Repeat("x", ingest.MaxKeyBytes))),
		"control in key": second(provider.Key("key", "bot", "a\nb")),
	} {
		var fe *ingest.FieldError
		require.True(t, errors.As(err, &fe), name)
	}
}

func second(_ string, err error) error { return err }

func TestDecode_MapsErrorsToStatuses(t *testing.T) {
	t.Parallel()
	var v struct {
		A []int `json:"a"`
	}
	require.ErrorIs(t, provider.Decode([]byte(`{"a":`), &v), ingest.ErrMalformed)
	require.ErrorIs(t, provider.Decode([]byte(`[1]`), &v), ingest.ErrMalformed)
	require.ErrorIs(t, provider.Decode([]byte("{\"a\":\"\xff\"}"), &v), ingest.ErrMalformed)
	var fe *ingest.FieldError
	require.True(t, errors.As(provider.Decode([]byte(`{"a":{}}`), &v), &fe))
	require.Equal(t, "body.a", fe.Field)
	require.Equal(t, "must be a JSON array", fe.Problem)
}

func TestTruncate_KeepsRunesWhole(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ab", provider.Truncate("abc", 2))
	require.Equal(t, "a", provider.Truncate("aé", 2), "é is two bytes")
	require.Equal(t, "aé", provider.Truncate("aé", 3))
}
