package ingest

import (
	"fmt"
	"strings"

	"github.com/lullhq/lull/internal/batch"
)

// Immediate-flush rules (IMMEDIATE_FLUSH): a message that matches one is
// flushed at once with what is buffered before it, instead of waiting for
// the quiet window.
const (
	RuleCommand     = "command"     // text starting with "/" (e.g. /start, /reset)
	RuleInteractive = "interactive" // a button or list reply: a complete intent
	RuleMedia       = "media"       // image, audio, video, document or sticker
)

// Rules decides which messages flush at once.
type Rules struct {
	command, interactive, media bool
}

// ParseRules reads the IMMEDIATE_FLUSH list ("" or "none": no rule).
func ParseRules(names []string) (Rules, error) {
	var r Rules
	for _, n := range names {
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "", "none":
		case RuleCommand:
			r.command = true
		case RuleInteractive:
			r.interactive = true
		case RuleMedia:
			r.media = true
		default:
			return Rules{}, fmt.Errorf("unknown rule %q (known: %s, %s, %s, none)", n, RuleCommand, RuleInteractive, RuleMedia)
		}
	}
	return r, nil
}

// Apply marks e to flush at once when a rule matches its message.
func (r Rules) Apply(e *Envelope) {
	if e.Kind != KindMessage {
		return
	}
	m := e.Message
	switch {
	case r.command && m.Type == batch.TypeText && strings.HasPrefix(strings.TrimSpace(m.Text), "/"):
		e.FlushNow = true
	case r.interactive && m.Type == batch.TypeInteractive:
		e.FlushNow = true
	case r.media && m.Media != nil && m.Type != batch.TypeReaction:
		e.FlushNow = true
	}
}

// RuleSet is the immediate-flush rules of every source: IMMEDIATE_FLUSH,
// overridden per provider (IMMEDIATE_FLUSH_WHATSAPP, …).
type RuleSet struct {
	Default  Rules
	BySource map[string]Rules // by Message.Source: "generic", "whatsapp", "evolution", "twilio"
	Words    Words            // the control words, of every source
}

// Apply marks e to flush at once when a rule of its source matches, or as a
// control word.
func (rs RuleSet) Apply(e *Envelope) {
	r, ok := rs.BySource[e.Message.Source]
	if !ok {
		r = rs.Default
	}
	r.Apply(e)
	rs.Words.Apply(e)
}
