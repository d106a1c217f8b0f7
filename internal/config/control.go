package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/store"
)

// QUIET_WINDOW_MODE values.
const (
	WindowFixed    = "fixed"
	WindowAdaptive = "adaptive"
)

// sourceWindow is one source's QUIET_WINDOW_<SOURCE> and MAX_WAIT_<SOURCE>.
type sourceWindow struct {
	source       string
	quiet, wait  time.Duration
	qName, wName string
}

func (c Config) sourceWindows() []sourceWindow {
	return []sourceWindow{
		{"generic", c.QuietWindowGeneric, c.MaxWaitGeneric, "QUIET_WINDOW_GENERIC", "MAX_WAIT_GENERIC"},
		{"whatsapp", c.QuietWindowWhatsApp, c.MaxWaitWhatsApp, "QUIET_WINDOW_WHATSAPP", "MAX_WAIT_WHATSAPP"},
		{"evolution", c.QuietWindowEvolution, c.MaxWaitEvolution, "QUIET_WINDOW_EVOLUTION", "MAX_WAIT_EVOLUTION"},
		{"twilio", c.QuietWindowTwilio, c.MaxWaitTwilio, "QUIET_WINDOW_TWILIO", "MAX_WAIT_TWILIO"},
		{"waha", c.QuietWindowWAHA, c.MaxWaitWAHA, "QUIET_WINDOW_WAHA", "MAX_WAIT_WAHA"},
		{"zapi", c.QuietWindowZAPI, c.MaxWaitZAPI, "QUIET_WINDOW_ZAPI", "MAX_WAIT_ZAPI"},
		{"telegram", c.QuietWindowTelegram, c.MaxWaitTelegram, "QUIET_WINDOW_TELEGRAM", "MAX_WAIT_TELEGRAM"},
		{"chatwoot", c.QuietWindowChatwoot, c.MaxWaitChatwoot, "QUIET_WINDOW_CHATWOOT", "MAX_WAIT_CHATWOOT"},
	}
}

// checkConversationControl checks the windows, the control words and the
// conversation API's settings.
func (c Config) checkConversationControl() []error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", name, fmt.Sprintf(format, args...)))
	}
	for _, w := range c.sourceWindows() {
		if w.quiet < 0 || (w.quiet > 0 && w.quiet < time.Millisecond) {
			bad(w.qName, "%s must be at least 1ms (unset: QUIET_WINDOW)", w.quiet)
		}
		if w.wait < 0 {
			bad(w.wName, "%s must not be negative (unset: MAX_WAIT)", w.wait)
		}
	}
	if c.QuietWindowMedia < time.Millisecond {
		bad("QUIET_WINDOW_MEDIA", "%s must be at least 1ms", c.QuietWindowMedia)
	}
	switch c.QuietWindowMode {
	case WindowFixed:
	case WindowAdaptive:
		if c.QuietWindowMin < time.Millisecond || c.QuietWindowMin > c.QuietWindow {
			bad("QUIET_WINDOW_MIN", "%s must be at least 1ms and at most QUIET_WINDOW (%s)", c.QuietWindowMin, c.QuietWindow)
		}
		if c.QuietWindowK <= 0 || c.QuietWindowK > 100 {
			bad("QUIET_WINDOW_K", "%g must be above 0 and at most 100", c.QuietWindowK)
		}
	default:
		bad("QUIET_WINDOW_MODE", "%q must be %s or %s", c.QuietWindowMode, WindowFixed, WindowAdaptive)
	}
	for _, list := range []struct {
		name  string
		words []string
	}{{"FLUSH_WORDS", c.FlushWords}, {"CANCEL_WORDS", c.CancelWords}} {
		for _, w := range list.words {
			if len(w) > 200 {
				bad(list.name, "%q is longer than 200 bytes", w[:40]+"…")
			}
		}
	}
	flush := map[string]bool{}
	for _, w := range c.FlushWords {
		flush[ingest.FoldWord(w)] = true
	}
	for _, w := range c.CancelWords {
		if f := ingest.FoldWord(w); f != "" && flush[f] {
			bad("CANCEL_WORDS", "%q is also a flush word (FLUSH_WORDS)", w)
		}
	}
	if c.DiscardWindow < time.Second {
		bad("DISCARD_WINDOW", "%s must be at least 1s", c.DiscardWindow)
	}
	return errs
}

// windowOptions are the store's windows and conversation-API options.
func (c Config) windowOptions(o *store.Options) {
	for _, w := range c.sourceWindows() {
		if w.quiet > 0 || w.wait > 0 {
			if o.Windows == nil {
				o.Windows = map[string]store.Window{}
			}
			o.Windows[w.source] = store.Window{Quiet: w.quiet, MaxWait: w.wait}
		}
	}
	o.MediaQuietWindow = c.QuietWindowMedia
	if c.QuietWindowMode == WindowAdaptive {
		o.Adaptive = &store.Adaptive{Min: c.QuietWindowMin, K: c.QuietWindowK}
	}
	if c.APIToken != "" {
		o.KeepDelivered = c.DiscardWindow
		o.StatusURL = c.StatusURLPrefix()
	}
}

// StatusURLPrefix is where a batch's status_url points, before its escaped
// id: absolute under PUBLIC_URL when it is set.
func (c Config) StatusURLPrefix() string {
	prefix := "/v1/batches/"
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err == nil {
			return strings.TrimRight(u.String(), "/") + prefix
		}
	}
	return prefix
}
