package jsonenc_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/jsonenc"
)

func TestMarshal_KeepsHTMLCharacters(t *testing.T) {
	t.Parallel()
	v := struct {
		Text string          `json:"text"`
		Raw  json.RawMessage `json:"raw"`
	}{Text: "<b>&</b>", Raw: json.RawMessage(`{"a": "<>&"}`)}
	got, err := jsonenc.Marshal(v)
	require.NoError(t, err)
	require.Equal(t, `{"text":"<b>&</b>","raw":{"a":"<>&"}}`, string(got))

	big := strings.Repeat("<", 1<<20)
	got, err = jsonenc.Marshal(big)
	require.NoError(t, err)
	require.Len(t, got, len(big)+2, "no amplification")
}
