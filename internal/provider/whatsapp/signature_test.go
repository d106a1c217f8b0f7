package whatsapp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/whatsapp"
)

// Test vectors computed independently with Python's hmac.
const (
	docSecret    = "test_app_secret"
	docSignature = "sha256=fc8df1f241b598c7b4bfc3ff8df84c07038ba087463cd586cab05dfa45797d14"
	// {"body":"caf\u00e9"} with the escape literally on the wire.
	unicodeBody      = `{"body":"caf\u00e9"}`
	unicodeSignature = "sha256=7aee86d9c693dd26362727b8138ee4d6dadccf227ec003a769797c08adfab750"
)

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	doc := providertest.Fixture(t, "doc_batch_text_voice.json")
	require.Len(t, doc, 820, "the fixture is the documented bytes, unchanged")
	require.Equal(t, docSignature, hmacsig.Sign(docSecret, doc))
	require.Equal(t, unicodeSignature, hmacsig.Sign(docSecret, []byte(unicodeBody)))

	tests := []struct {
		name    string
		body    []byte
		header  string
		secrets []string
		ok      bool
	}{
		{"documented vector", doc, docSignature, []string{docSecret}, true},
		{"unicode escapes hashed as sent", []byte(unicodeBody), unicodeSignature, []string{docSecret}, true},
		{"uppercase hex", doc, "sha256=FC8DF1F241B598C7B4BFC3FF8DF84C07038BA087463CD586CAB05DFA45797D14", []string{docSecret}, true},
		{"second of several app secrets", doc, docSignature, []string{"other", docSecret}, true},
		{"decoded unicode is not what was signed", []byte(`{"body":"café"}`), unicodeSignature, []string{docSecret}, false},
		{"body changed by one byte", append([]byte{' '}, doc...), docSignature, []string{docSecret}, false},
		{"wrong secret", doc, docSignature, []string{"wrong"}, false},
		{"missing header", doc, "", []string{docSecret}, false},
		{"no prefix", doc, docSignature[len("sha256="):], []string{docSecret}, false},
		{"legacy sha1 header", doc, "sha1=0123456789abcdef0123456789abcdef01234567", []string{docSecret}, false},
		{"not hex", doc, "sha256=zz", []string{docSecret}, false},
		{"truncated", doc, docSignature[:40], []string{docSecret}, false},
		{"no secret", doc, docSignature, nil, false},
		{"empty secret never matches", doc, hmacsig.Sign("", doc), []string{""}, false},
	}
	for _, tt := range tests {
		err := whatsapp.VerifySignature(tt.body, tt.header, tt.secrets...)
		providertest.RequireVerdict(t, tt.name, err, tt.ok, whatsapp.ErrSignature)
	}
}

func TestVerifyChallenge(t *testing.T) {
	t.Parallel()
	got, err := whatsapp.VerifyChallenge("subscribe", "my-token", "1158201444", "my-token")
	require.NoError(t, err)
	require.Equal(t, "1158201444", got, "the challenge goes back verbatim")

	for name, c := range map[string][4]string{
		"wrong token":        {"subscribe", "nope", "1", "my-token"},
		"wrong mode":         {"unsubscribe", "my-token", "1", "my-token"},
		"no mode":            {"", "my-token", "1", "my-token"},
		"token not set":      {"subscribe", "", "1", ""},
		"token prefix":       {"subscribe", "my-tok", "1", "my-token"},
		"empty against none": {"subscribe", "", "1", "my-token"},
	} {
		_, err := whatsapp.VerifyChallenge(c[0], c[1], c[2], c[3])
		require.ErrorIs(t, err, whatsapp.ErrVerifyToken, name)
	}
}
