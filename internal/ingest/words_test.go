package ingest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
)

func TestWords_WholeTextCaseAndAccentInsensitive(t *testing.T) {
	w := ingest.NewWords([]string{"pronto", "é isso"}, []string{"Cancelar", " "})
	for text, want := range map[string]string{
		"cancelar":          "cancel",
		"  CANCELAR!  ":     "cancel",
		"Cancelár":          "cancel",
		"pronto":            "flush",
		"Pronto.":           "flush",
		"e isso":            "flush",
		"É   ISSO":          "flush",
		"cancelar o pedido": "",
		"pronto?!x":         "",
		"":                  "",
	} {
		e := ingest.Envelope{Key: "k", Message: batch.Message{ID: "m", Text: text, Type: batch.TypeText}}
		w.Apply(&e)
		got := ""
		switch {
		case e.Cancel:
			got = "cancel"
		case e.FlushNow:
			got = "flush"
		}
		require.Equal(t, want, got, "%q", text)
	}
	typing := ingest.Envelope{Key: "k", Kind: ingest.KindTyping, Message: batch.Message{Text: "cancelar"}}
	w.Apply(&typing)
	require.False(t, typing.Cancel, "only messages")
}

func FuzzFoldWord(f *testing.F) {
	for _, s := range []string{"Cancelar!", "É isso", "  a  b ", "\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once := ingest.FoldWord(s)
		require.Equal(t, once, ingest.FoldWord(once), "folding is idempotent")
	})
}
