package ingest

import (
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Words are the control words (FLUSH_WORDS, CANCEL_WORDS): a text message
// that is exactly one of them, compared case- and accent-insensitively and
// without surrounding spaces and end punctuation ("Cancelar!" is
// "cancelar"), flushes the conversation at once with what is buffered (a
// flush word, which is delivered with the batch) or drops what is buffered,
// the word included (a cancel word: nothing is delivered).
type Words struct {
	flush, cancel map[string]bool
}

// NewWords reads the two lists; empty entries are ignored.
func NewWords(flush, cancel []string) Words {
	set := func(list []string) map[string]bool {
		m := map[string]bool{}
		for _, w := range list {
			if f := FoldWord(w); f != "" {
				m[f] = true
			}
		}
		return m
	}
	return Words{flush: set(flush), cancel: set(cancel)}
}

// Apply marks e as a flush word (FlushNow) or a cancel word (Cancel).
func (w Words) Apply(e *Envelope) {
	if e.Kind != KindMessage || (len(w.flush) == 0 && len(w.cancel) == 0) || e.Message.Text == "" {
		return
	}
	f := FoldWord(e.Message.Text)
	switch {
	case w.cancel[f]:
		e.Cancel = true
	case w.flush[f]:
		e.FlushNow = true
	}
}

// FoldWord is s as control words are compared: without accents, lower
// case, surrounding spaces and end punctuation trimmed, inner runs of spaces
// as one.
func FoldWord(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	folded, _, err := transform.String(t, strings.ToLower(s))
	if err != nil {
		folded = strings.ToLower(s)
	}
	folded = strings.TrimRightFunc(strings.TrimSpace(folded), func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(".!?…", r)
	})
	return strings.Join(strings.Fields(folded), " ")
}
