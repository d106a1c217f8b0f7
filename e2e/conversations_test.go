package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/sink"
	"github.com/lullhq/lull/internal/testenv"
)

const apiToken = "bot-api-token-0123456789"

// v1 calls the conversation API and decodes its JSON answer into out (when
// not nil); it returns the status.
func v1(t *testing.T, d *harness.Deployment, method, path string, body any, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.URL(path), r)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.Client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		require.NoError(t, json.Unmarshal(raw, out), "%s %s: %s", method, path, raw)
	}
	return resp.StatusCode
}

func conversationPath(key string) string { return "/v1/conversations/" + url.PathEscape(key) }
func batchPath(id string) string         { return "/v1/batches/" + url.PathEscape(id) }

func withAPI(opts harness.Options) harness.Options {
	if opts.Env == nil {
		opts.Env = map[string]string{}
	}
	opts.Env["API_TOKEN"] = apiToken
	return opts
}

func TestV1_WithoutAPITokenTheRoutesDoNotExist(t *testing.T) {
	d := harness.Setup(t, harness.Options{})
	require.Equal(t, http.StatusNotFound, v1(t, d, http.MethodGet, conversationPath("k"), nil, nil))
}

func TestV1_TokenAndUnknownConversation(t *testing.T) {
	d2 := harness.Setup(t, withAPI(harness.Options{}))
	req, _ := http.NewRequest(http.MethodGet, d2.URL(conversationPath("k")), nil)
	req.Header.Set("Authorization", "Bearer wrong-token-0123456789")
	resp, err := d2.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, http.StatusNotFound, v1(t, d2, http.MethodGet, conversationPath("nobody"), nil, nil))
}

func TestV1_StatusAndFlushNow(t *testing.T) {
	d := harness.Setup(t, withAPI(harness.Options{QuietWindow: time.Minute, MaxWait: 2 * time.Minute}))
	const key = "5511999990201"
	d.Send(key, "oi")
	d.Send(key, "tudo bem?")
	var st struct {
		Key, Source, Reason string
		Buffered            int
		Deadline            *string
		InFlight            *string `json:"in_flight"`
		Paused              bool
		LastBatchID         *string `json:"last_batch_id"`
	}
	require.Eventually(t, func() bool {
		return v1(t, d, http.MethodGet, conversationPath(key), nil, &st) == http.StatusOK && st.Buffered == 2
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, "generic", st.Source)
	assert.Equal(t, "quiet", st.Reason)
	require.NotNil(t, st.Deadline)
	assert.Nil(t, st.InFlight)

	var flushed struct {
		BatchID string `json:"batch_id"`
		Status  string
	}
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodPost, conversationPath(key)+"/flush", nil, &flushed))
	got := d.WaitBatches(1, 10*time.Second)
	assert.Equal(t, got[0].Batch.BatchID, flushed.BatchID, "answered once claimed, with the batch id")
	assert.Equal(t, batch.ReasonManual, got[0].Batch.Reason)
	assert.Equal(t, []string{"oi", "tudo bem?"}, harness.Texts(got[0].Batch))
	assert.Equal(t, "/v1/batches/"+url.PathEscape(flushed.BatchID), got[0].Batch.StatusURL)
	assert.Equal(t, http.StatusNotFound, v1(t, d, http.MethodPost, conversationPath(key)+"/flush", nil, nil), "nothing buffered")
	harness.AssertExactlyOnce(t, d.SentSoFar(), d.Recv.Accepted())
}

func TestV1_CancelDropsTheBufferAndAnswersIt(t *testing.T) {
	d := harness.Setup(t, withAPI(harness.Options{QuietWindow: harness.BurstWindow}))
	const key = "5511999990202"
	d.Send(key, "quero pizza")
	d.Send(key, "de calabresa")
	var st struct{ Buffered int }
	require.Eventually(t, func() bool {
		return v1(t, d, http.MethodGet, conversationPath(key), nil, &st) == http.StatusOK && st.Buffered == 2
	}, 10*time.Second, 20*time.Millisecond)
	var cancelled struct {
		Cancelled int
		Messages  []batch.Message
	}
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodPost, conversationPath(key)+"/cancel", nil, &cancelled))
	require.Equal(t, 2, cancelled.Cancelled)
	require.Equal(t, "quero pizza", cancelled.Messages[0].Text)
	d.RequireNoNewRequests(2 * harness.BurstWindow)

	d.Send(key, "esquece")
	got := d.WaitBatches(1, 10*time.Second)
	require.Equal(t, []string{"esquece"}, harness.Texts(got[0].Batch), "the next message starts a new burst")
}

func TestV1_PauseKeepsMessagesUntilResume(t *testing.T) {
	d := harness.Setup(t, withAPI(harness.Options{}))
	const key = "5511999990203"
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodPost, conversationPath(key)+"/pause", nil, nil))
	d.Send(key, "alguém aí?")
	d.Send(key, "um humano, por favor")
	d.RequireNoNewRequests(5 * harness.DefaultQuietWindow)
	var st struct {
		Paused   bool
		Buffered int
	}
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodGet, conversationPath(key), nil, &st))
	require.True(t, st.Paused)
	require.Equal(t, 2, st.Buffered)
	require.Equal(t, http.StatusConflict, v1(t, d, http.MethodPost, conversationPath(key)+"/flush", nil, nil), "paused: resume instead")
	require.Equal(t, http.StatusUnprocessableEntity, v1(t, d, http.MethodPost, conversationPath(key)+"/pause", map[string]string{"for": "soon"}, nil))

	require.Equal(t, http.StatusOK, v1(t, d, http.MethodPost, conversationPath(key)+"/resume", nil, nil))
	got := d.WaitBatches(1, 10*time.Second)
	require.True(t, got[0].Batch.Paused)
	require.Equal(t, batch.ReasonResumed, got[0].Batch.Reason)
	require.Equal(t, []string{"alguém aí?", "um humano, por favor"}, harness.Texts(got[0].Batch))

	// A timed pause ends by itself.
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodPost, conversationPath(key)+"/pause", map[string]string{"for": "1500ms"}, nil))
	d.Send(key, "voltei")
	got = d.WaitBatches(2, 10*time.Second)
	require.True(t, got[1].Batch.Paused)
	require.Equal(t, []string{"voltei"}, harness.Texts(got[1].Batch))
	harness.AssertExactlyOnce(t, d.SentSoFar(), d.Recv.Accepted())
}

// The supersede flow through the API: a bot answered batch N, the user
// writes, N is no longer current, the bot discards it, and the next batch
// holds N's messages then the new one, once, naming N in replaces.
func TestV1_DiscardedBatchComesBackFirstInTheNextBatch(t *testing.T) {
	d := harness.Setup(t, withAPI(harness.Options{QuietWindow: harness.BurstWindow}))
	const key = "5511999990204"
	d.Send(key, "qual o prazo?")
	d.Send(key, "do pedido 4471")
	n := d.WaitBatches(1, 10*time.Second)[0].Batch
	var st struct {
		State         string
		Current       bool
		NewerMessages int `json:"newer_messages"`
	}
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodGet, n.StatusURL, nil, &st))
	require.Equal(t, "delivered", st.State)
	require.True(t, st.Current)

	d.Send(key, "ah, e o frete?")
	require.Eventually(t, func() bool {
		return v1(t, d, http.MethodGet, n.StatusURL, nil, &st) == http.StatusOK && !st.Current
	}, 10*time.Second, 20*time.Millisecond, "current turns false once the user writes")
	require.Equal(t, 1, st.NewerMessages)
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodPost, batchPath(n.BatchID)+"/discard", nil, nil))
	require.Equal(t, http.StatusConflict, v1(t, d, http.MethodPost, batchPath(n.BatchID)+"/discard", nil, nil), "once")

	got := d.WaitBatches(2, 10*time.Second)
	next := got[1].Batch
	require.Equal(t, []string{"qual o prazo?", "do pedido 4471", "ah, e o frete?"}, harness.Texts(next))
	require.Equal(t, []string{n.BatchID}, next.Replaces)
	d.RequireQuiet()
	require.Len(t, harness.Distinct(d.Recv.Accepted()), 2, "the replacing batch, once")
	require.Equal(t, http.StatusOK, v1(t, d, http.MethodGet, n.StatusURL, nil, &st))
	require.Equal(t, "discarded", st.State)
}

// The same, held: the bot holds the delivery while it thinks, the user
// writes, the bot sees the batch is stale and answers 409 + X-Lull-Discard.
func TestV1_Receiver409DiscardsAHeldBatch(t *testing.T) {
	var d *harness.Deployment
	var first atomic.Bool
	const key = "5511999990205"
	opts := withAPI(harness.Options{QuietWindow: harness.BurstWindow})
	opts.Receiver.Decide = func(b batch.Batch) (int, http.Header) {
		if !first.CompareAndSwap(false, true) {
			return http.StatusOK, nil
		}
		d.Send(key, "esqueci: é urgente") // the user writes while the bot thinks
		var st struct{ Current bool }
		for range 200 {
			if v1(t, d, http.MethodGet, b.StatusURL, nil, &st) == http.StatusOK && !st.Current {
				return http.StatusConflict, http.Header{sink.HeaderDiscard: {"1"}}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Error("the batch stayed current after the user wrote")
		return http.StatusOK, nil
	}
	d = harness.Setup(t, opts)
	d.Send(key, "preciso de ajuda")
	got := d.WaitBatches(1, 15*time.Second)
	require.Len(t, got, 1, "the discarded attempt was not accepted")
	next := got[0].Batch
	require.Equal(t, []string{"preciso de ajuda", "esqueci: é urgente"}, harness.Texts(next))
	require.Len(t, next.Replaces, 1)
	require.NotEqual(t, next.BatchID, next.Replaces[0])
	d.RequireQuiet()
	harness.AssertExactlyOnce(t, d.SentSoFar(), d.Recv.Accepted())
}

func TestControlWords_FlushAndCancel(t *testing.T) {
	d := harness.Setup(t, harness.Options{QuietWindow: time.Minute, Env: map[string]string{
		"FLUSH_WORDS": "pronto,é isso", "CANCEL_WORDS": "cancelar",
	}})
	d.Send("5511999990206", "um x-burguer")
	d.Send("5511999990206", "É ISSO!")
	got := d.WaitBatches(1, 10*time.Second)
	require.Equal(t, []string{"um x-burguer", "É ISSO!"}, harness.Texts(got[0].Batch), "a flush word flushes at once, and is delivered")
	require.Equal(t, batch.ReasonImmediate, got[0].Batch.Reason)

	d.Send("5511999990207", "uma pizza")
	d.Send("5511999990207", "Cancelár")
	d.RequireNoNewRequests(time.Second)
	d.Send("5511999990207", "pronto")
	got = d.WaitBatches(2, 10*time.Second)
	require.Equal(t, []string{"pronto"}, harness.Texts(got[1].Batch), "a cancel word dropped the buffer and itself")
}

// The Go example bot (examples/bot_go) against the real binaries: it
// discards its answer to a batch that went stale while it thought, and
// answers the batch that holds everything.
func TestExampleBot_DiscardsStaleBatches(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bot")
	build := exec.Command("go", "build", "-o", bin, "../examples/bot_go")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	addr := testenv.FreeAddr(t)
	opts := withAPI(harness.Options{QuietWindow: 300 * time.Millisecond})
	opts.Env["CALLBACK_URL"] = "http://" + addr + "/batches"
	opts.Env["CALLBACK_TIMEOUT"], opts.Env["LEASE"] = "10s", "30s" // the bot holds each delivery while it thinks
	d := harness.Setup(t, opts)
	mu := &testenv.LogBuffer{}
	bot := exec.Command(bin)
	bot.Env = []string{"LISTEN=" + addr, "LULL_URL=http://" + d.Addr, "API_TOKEN=" + apiToken, "THINK=2s"}
	bot.Stdout, bot.Stderr = mu, mu
	require.NoError(t, bot.Start())
	t.Cleanup(func() { _ = bot.Process.Kill(); _ = bot.Wait() })
	require.Eventually(t, func() bool { return strings.Contains(mu.String(), "bot listening") }, 10*time.Second, 20*time.Millisecond)

	const key = "5511999990208"
	d.Send(key, "oi")
	time.Sleep(time.Second) // the batch is with the bot, thinking
	d.Send(key, "tem horário amanhã?")
	require.Eventually(t, func() bool { return strings.Contains(mu.String(), `answering "you said: oi / tem horário amanhã?"`) },
		20*time.Second, 50*time.Millisecond, "bot output:\n%s", mu)
	require.Contains(t, mu.String(), "stale (1 newer messages): discarding my answer")
	require.Equal(t, 1, strings.Count(mu.String(), "answering"), "one answer, to the whole burst")
}

// Under load, receivers discard a share of held batches (409 +
// X-Lull-Discard): every message still ends in exactly one accepted batch,
// and every discarded batch is named by exactly one accepted batch's
// replaces, which holds its messages first.
func TestV1_DiscardsUnderLoadKeepEveryMessageOnce(t *testing.T) {
	var mu sync.Mutex
	discarded := map[string][]string{} // batch id -> its message ids
	var n atomic.Int64
	opts := withAPI(harness.Options{QuietWindow: 300 * time.Millisecond})
	opts.Receiver.Decide = func(b batch.Batch) (int, http.Header) {
		if n.Add(1)%3 != 0 { // a third of the deliveries are stale
			return 0, nil
		}
		mu.Lock()
		defer mu.Unlock()
		discarded[b.BatchID] = harness.IDs(b)
		return http.StatusConflict, http.Header{sink.HeaderDiscard: {"1"}}
	}
	d := harness.Setup(t, opts)
	keys := harness.Keys("55119999%04d", 40)
	var wg sync.WaitGroup
	for _, key := range keys {
		wg.Go(func() {
			for i := range 6 {
				d.Send(key, harness.MsgText(key, i))
				time.Sleep(time.Duration(i%3) * 150 * time.Millisecond) // some bursts split, some not
			}
		})
	}
	wg.Wait()
	d.WaitDelivered(60 * time.Second)
	d.RequireQuiet()
	accepted := d.Recv.Accepted()
	harness.AssertExactlyOnce(t, d.SentSoFar(), accepted)

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, discarded)
	named := map[string]int{}
	for _, r := range harness.Distinct(accepted) {
		for _, id := range r.Batch.Replaces {
			named[id]++
			_, ok := discarded[id]
			require.True(t, ok, "%s replaces %s, which was never discarded", r.Batch.BatchID, id)
		}
		// The replaced batches' messages come first: the last replaced
		// batch holds every message of the earlier ones it replaced.
		if len(r.Batch.Replaces) > 0 {
			ids, last := harness.IDs(r.Batch), discarded[r.Batch.Replaces[len(r.Batch.Replaces)-1]]
			require.GreaterOrEqual(t, len(ids), len(last))
			require.Equal(t, last, ids[:len(last)], "%s holds the discarded messages first", r.Batch.BatchID)
		}
	}
	for id := range discarded {
		require.Equal(t, 1, named[id], "discarded batch %s is named by exactly one accepted batch", id)
	}
	t.Logf("%d deliveries, %d discarded, %d batches accepted", n.Load(), len(discarded), len(harness.Distinct(accepted)))
}

// A worker killed between a discard and the flush of the batch that holds
// the discarded messages again: the next worker flushes it, nothing lost,
// nothing twice.
func TestV1_WorkerKilledBetweenDiscardAndFlush(t *testing.T) {
	discardedOne := make(chan string, 1)
	var once atomic.Bool
	opts := withAPI(harness.Options{QuietWindow: 2 * time.Second})
	opts.Receiver.Decide = func(b batch.Batch) (int, http.Header) {
		if !once.CompareAndSwap(false, true) {
			return 0, nil
		}
		discardedOne <- b.BatchID
		return http.StatusConflict, http.Header{sink.HeaderDiscard: {"1"}}
	}
	d := harness.Setup(t, opts)
	const key = "5511999990209"
	d.Send(key, "primeira")
	d.Send(key, "segunda")
	id := <-discardedOne
	// The discard is one script, run once the 409 is read; the batch that
	// holds its messages again is due one quiet window later.
	require.Eventually(t, func() bool {
		var st struct{ State string }
		return v1(t, d, http.MethodGet, batchPath(id), nil, &st) == http.StatusOK && st.State == "discarded"
	}, 5*time.Second, 10*time.Millisecond)
	d.Workers[0].Kill()
	d.StartWorker()
	got := d.WaitBatches(1, 20*time.Second)
	require.Equal(t, []string{"primeira", "segunda"}, harness.Texts(got[0].Batch))
	require.Equal(t, []string{id}, got[0].Batch.Replaces)
	d.RequireQuiet()
	harness.AssertExactlyOnce(t, d.SentSoFar(), d.Recv.Accepted())
}
