package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
)

const (
	consoleToken = "e2e-console-admin-token-0123"
	chromiumPath = "/usr/bin/chromium"
	// consoleShotEnv names where TestConsole writes its screenshot
	// (docs/console.png in the README); consoleShotPhoneEnv the same at
	// phone width.
	consoleShotEnv      = "LULL_CONSOLE_SCREENSHOT"
	consoleShotPhoneEnv = "LULL_CONSOLE_SCREENSHOT_PHONE"
)

// requireChromium skips the test when Debian's Chromium is missing, except
// on CI (CI=true), where .ci/run installs it and a skip would hide the proof.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing, and CI must run this test (apt-get install -y chromium): %v", chromiumPath, err)
		}
		t.Skipf("%s is missing (apt-get install -y chromium): %v", chromiumPath, err)
	}
}

// browser is a headless Chromium of the test's own (fresh profile, no
// network but the test's), closed when the test ends. The test fails if a
// page throws or logs an error other than a refused request.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	// The first call starts the browser, bound to ctx (a shorter-lived
	// context would take the browser with it).
	require.NoError(t, chromedp.Do(ctx), "start %s", chromiumPath)
	messages := chromedp.Console(ctx)
	var mu sync.Mutex
	var problems []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return // the browser closed
			}
			// The network's own lines are the refusals the test asks for
			// (a wrong login is a 401); any other error is the page's
			// fault: a script error, a CSP violation.
			if (m.Type == chromedp.ConsoleError || m.IsException()) && m.Source != "network" {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("browser: %s", p)
		}
	})
	return ctx
}

// page runs steps in the browser, bounded so that a missing element fails
// the test instead of hanging it.
func page(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, steps...), what)
}

// read runs one action that returns a value, bounded as page is.
func read[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err, what)
	return v
}

func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return read(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// countdown reads a "flush in" cell ("3.4s") as seconds.
func countdown(t *testing.T, ctx context.Context, sel string) float64 {
	t.Helper()
	s := textOf(t, ctx, sel)
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	require.NoError(t, err, "countdown %q", s)
	return v
}

// waitGone waits until sel matches nothing.
func waitGone(t *testing.T, ctx context.Context, sel string, timeout time.Duration) {
	t.Helper()
	harness.WaitUntil(t, timeout, sel+" gone from the page", func() bool {
		return read(t, ctx, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))) == 0
	})
}

// confirmDialog waits for the console's confirm dialog, checks it names
// what, and confirms.
func confirmDialog(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	page(t, ctx, "confirm dialog", chromedp.WaitVisible(chromedp.CSS("#confirm-ok")))
	require.Contains(t, textOf(t, ctx, "#confirm-text"), what)
	page(t, ctx, "confirm", chromedp.Click(chromedp.CSS("#confirm-ok")))
}

func tableRow(table, key string) string { return fmt.Sprintf(`#%s tbody tr[data-key=%q]`, table, key) }

// An operator logs in through the form, watches a conversation buffer with
// its countdown and flush, flushes another one by hand into a dead letter
// (its receiver refuses it), looks at it, replays it with the button, and
// looks the conversation up; the page works at phone width.
func TestConsole_OperatorWatchesAFlushAndReplaysADeadLetter(t *testing.T) {
	requireChromium(t)
	shot, shotPhone := os.Getenv(consoleShotEnv), os.Getenv(consoleShotPhoneEnv)
	const quiet = 4 * time.Second
	d := harness.Setup(t, harness.Options{
		QuietWindow: quiet,
		MaxWait:     30 * time.Second,
		Env: map[string]string{
			"ADMIN_TOKEN":  consoleToken,
			"MAX_ATTEMPTS": "1",
			// A held delivery stays in flight long enough to be seen.
			"CALLBACK_TIMEOUT": "3s",
			"LEASE":            "9s",
		},
	})
	ctx := browser(t, 1280, 900)

	// Not logged in: the form. A wrong token is refused, the right one lets in.
	page(t, ctx, "open the console",
		chromedp.Navigate(d.URL("/console")),
		chromedp.WaitVisible(chromedp.CSS("#token")))
	require.Equal(t, d.URL("/console/login"), read(t, ctx, "where", chromedp.Location()))
	page(t, ctx, "log in with a wrong token",
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-admin-token"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	page(t, ctx, "log in",
		chromedp.SendKeys(chromedp.CSS("#token"), consoleToken),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#buffering")))
	require.Equal(t, d.URL("/console"), read(t, ctx, "where", chromedp.Location()))
	harness.WaitUntil(t, 10*time.Second, "the page polling", func() bool {
		return textOf(t, ctx, "#status") == "live"
	})

	// A buffering conversation appears with a running countdown, then flushes.
	const live = "console-live"
	d.Send(live, "oi")
	d.Send(live, "tudo bem?")
	page(t, ctx, "the buffering conversation", chromedp.WaitVisible(chromedp.CSS(tableRow("buffering", live))))
	require.Equal(t, "2", textOf(t, ctx, tableRow("buffering", live)+" td.msgs"))
	require.Equal(t, "generic", textOf(t, ctx, tableRow("buffering", live)+" td.source"))
	require.Equal(t, "quiet", textOf(t, ctx, tableRow("buffering", live)+" td.reason"))
	first := countdown(t, ctx, tableRow("buffering", live)+" td.left")
	time.Sleep(1200 * time.Millisecond)
	second := countdown(t, ctx, tableRow("buffering", live)+" td.left")
	require.LessOrEqual(t, first, quiet.Seconds())
	require.Greater(t, second, 0.0, "not flushed yet")
	require.InDelta(t, first-1.2, second, 0.5, "the countdown runs (%.1fs, then %.1fs)", first, second)
	waitGone(t, ctx, tableRow("buffering", live), quiet+10*time.Second)
	got := d.WaitBatches(1, 10*time.Second)
	require.Equal(t, live, got[0].Batch.Key)
	require.Equal(t, []string{"oi", "tudo bem?"}, harness.Texts(got[0].Batch))

	// Flush now (confirmed) into a receiver that refuses: a dead letter.
	const dead = "console-dead"
	d.Recv.Reject(dead)
	d.Send(dead, "vai falhar")
	page(t, ctx, "the second conversation", chromedp.Click(chromedp.CSS(tableRow("buffering", dead)+" button.flush")))
	confirmDialog(t, ctx, dead)
	page(t, ctx, "its dead letter", chromedp.WaitVisible(chromedp.CSS(tableRow("dead", dead))))
	var refused harness.Received
	for _, r := range d.Recv.All() {
		if r.Batch.Key == dead {
			refused = r
		}
	}
	require.Equal(t, http.StatusBadRequest, refused.Status)
	require.Equal(t, "manual", refused.Batch.Reason, "flushed by the button, well before its quiet window")
	require.Contains(t, textOf(t, ctx, tableRow("dead", dead)+" td.err"), "400")

	page(t, ctx, "show the dead letter",
		chromedp.Click(chromedp.CSS(tableRow("dead", dead)+" button.show")),
		chromedp.WaitVisible(chromedp.CSS("#detail-text")))
	detail := textOf(t, ctx, "#detail-text")
	require.Contains(t, detail, "vai falhar")
	require.Contains(t, detail, refused.Batch.BatchID)
	page(t, ctx, "close it", chromedp.Click(chromedp.CSS("#detail-close")), chromedp.WaitNotVisible(chromedp.CSS("#detail-text")))

	// Replay (confirmed): the same batch, accepted this time.
	d.Recv.AcceptAll()
	page(t, ctx, "replay", chromedp.Click(chromedp.CSS(tableRow("dead", dead)+" button.replay")))
	confirmDialog(t, ctx, refused.Batch.BatchID)
	waitGone(t, ctx, tableRow("dead", dead), 10*time.Second)
	harness.WaitUntil(t, 10*time.Second, "the replayed batch accepted", func() bool {
		for _, r := range d.Recv.Accepted() {
			if r.Batch.BatchID == refused.Batch.BatchID {
				require.Equal(t, harness.IDs(refused.Batch), harness.IDs(r.Batch), "the same messages")
				return true
			}
		}
		return false
	})

	// Look the conversation up: its meta says the replayed batch was committed.
	page(t, ctx, "look up",
		chromedp.SetValue(chromedp.CSS("#lookup-key"), dead),
		chromedp.Click(chromedp.CSS("#lookup button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#lookup-text")))
	committed := fmt.Sprintf("committed: %d", refused.Batch.Generation)
	harness.WaitUntil(t, 10*time.Second, "the lookup to show "+committed, func() bool {
		if strings.Contains(textOf(t, ctx, "#lookup-text"), committed) {
			return true
		}
		page(t, ctx, "refresh the lookup", chromedp.Click(chromedp.CSS("#lookup-refresh")))
		time.Sleep(200 * time.Millisecond)
		return false
	})
	inspect := textOf(t, ctx, "#lookup-text")
	require.Contains(t, inspect, "conversation "+dead)
	require.Contains(t, inspect, "(no batch in flight)")

	// The rates: messages were accepted and batches delivered meanwhile.
	charted := read(t, ctx, "the charts", chromedp.Evaluate[bool](
		`[...document.querySelectorAll("#rates figure")].every(f => f.querySelector("svg polyline"))`))
	require.True(t, charted, "every chart has a line")

	if shot != "" {
		stop := consoleScene(t, ctx, d)
		writeShot(t, shot, read(t, ctx, "screenshot", chromedp.FullScreenshot(100)))
		stop()
	}

	// Phone width: nothing wider than the screen, the actions reachable.
	d.Send("console-phone", "oi")
	page(t, ctx, "phone width",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.WaitVisible(chromedp.CSS(tableRow("buffering", "console-phone")+" button.flush")))
	fits := read(t, ctx, "measure", chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	require.True(t, fits, "the page scrolls sideways at 390 px")
	if shotPhone != "" {
		page(t, ctx, "the tables", chromedp.Click(chromedp.CSS("#lookup-close")), chromedp.ScrollIntoView(chromedp.CSS("#buffering")))
		writeShot(t, shotPhone, read(t, ctx, "screenshot", chromedp.CaptureScreenshot()))
	}
}

// consoleScene fills the page for the README's screenshot: a steady trickle
// of conversations for the charts, a few bursts buffering, a dead letter and
// one batch held in flight, and a lookup. It returns a func that stops the
// trickle.
func consoleScene(t *testing.T, ctx context.Context, d *harness.Deployment) (stop func()) {
	t.Helper()
	d.Recv.Reject("5511988887777")
	texts := []string{"oi", "tudo bem?", "queria saber do meu pedido", "é o 4471", "obrigado!"}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			key := fmt.Sprintf("55119999%05d", 1000+(i/3)%16) // bursts of three
			if i == 31 {
				key = "5511988887777"
			}
			d.Send(key, texts[i%len(texts)])
			select {
			case <-done:
				return
			case <-time.After(time.Duration(120+(i*37)%250) * time.Millisecond):
			}
		}
	}()
	time.Sleep(25 * time.Second)
	// One batch held in flight: flushed by hand, or whichever comes first.
	held := d.Recv.HoldOne()
	page(t, ctx, "flush one by hand", chromedp.Click(chromedp.CSS("#buffering tbody tr:first-child button.flush")))
	confirmDialog(t, ctx, "Flush conversation")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch reached the receiver to be held")
	}
	page(t, ctx, "the batch in flight", chromedp.WaitVisible(chromedp.CSS("#inflight tbody tr")))
	// A few bursts, one of them looked up.
	for i := range 6 {
		for j := range 1 + i%4 {
			d.Send(fmt.Sprintf("55218888%05d", 2000+i), texts[j])
		}
	}
	page(t, ctx, "look one up",
		chromedp.SetValue(chromedp.CSS("#lookup-key"), "5521888802003"),
		chromedp.Click(chromedp.CSS("#lookup button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(tableRow("buffering", "5521888802005"))),
		chromedp.WaitVisible(chromedp.CSS("#lookup-text")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("toasts").replaceChildren()`))
	return func() {
		close(done)
		<-stopped
	}
}

func writeShot(t *testing.T, path string, png []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
