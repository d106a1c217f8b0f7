package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/sink"
)

func TestBurst_BecomesOneBatchInSendOrder(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	const key = "5511999990001"
	for i := range 5 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // the user typing: gaps well below QUIET_WINDOW
		}
		fields := map[string]any{}
		if i == 2 {
			fields["metadata"] = map[string]any{"push_name": "Ana", "n": 2}
		}
		require.Equal(t, http.StatusAccepted, b.post(key, msgText(key, i), fields))
	}
	sent := b.sentSoFar()

	got := b.waitBatches(1, 10*time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	require.Len(t, got, 1, "one burst, one batch")
	d := got[0]
	bt := d.Batch
	assertExactlyOnce(t, sent, b.recv.accepted())
	assert.Equal(t, sentTexts(sent), texts(bt), "all five, in send order")
	assert.Equal(t, key, bt.Key)
	assert.Equal(t, batch.ReasonQuiet, bt.Reason)
	assert.Equal(t, key+":"+strconv.FormatInt(bt.Generation, 10), bt.BatchID)
	assert.Equal(t, bt.BatchID, d.Header.Get(sink.HeaderIdempotencyKey))
	assert.Equal(t, bt.BatchID, d.Header.Get(sink.HeaderBatchID))
	assert.Equal(t, "1", d.Header.Get(sink.HeaderAttempt))
	assert.Equal(t, 1, bt.Attempt)
	assert.Empty(t, d.Header.Get(sink.HeaderSignature), "no CALLBACK_SECRET, no signature")
	for i, m := range bt.Messages {
		assert.Equal(t, "text", m.Type, "message %d type", i)
		assert.Equal(t, "generic", m.Source, "message %d source", i)
		want := "{}"
		if i == 2 {
			want = `{"n":2,"push_name":"Ana"}`
		}
		assert.JSONEq(t, want, string(m.Metadata), "message %d metadata", i)
	}

	// The times tell the story: received in order, flushed one quiet
	// window after the last message, delivered promptly after that.
	firstAt, lastAt, flushedAt := parseTime(t, bt.FirstAt), parseTime(t, bt.LastAt), parseTime(t, bt.FlushedAt)
	assert.Equal(t, bt.Messages[0].ReceivedAt, bt.FirstAt)
	assert.Equal(t, bt.Messages[4].ReceivedAt, bt.LastAt)
	assert.GreaterOrEqual(t, lastAt.Sub(firstAt), 4*50*time.Millisecond)
	assert.GreaterOrEqual(t, flushedAt.Sub(lastAt), b.opts.QuietWindow, "flushed before the quiet window passed")
	assert.Less(t, d.At.Sub(lastAt.Add(b.opts.QuietWindow)), time.Second, "delivered long after its deadline")
}

func TestTwoBursts_SecondHoldsNoMessageOfFirst(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	const key = "5511999990002"
	for i := range 3 {
		b.send(key, msgText(key, i))
	}
	first := b.waitBatches(1, 10*time.Second)[0]
	require.Len(t, first.Batch.Messages, 3)
	firstSent := b.sentSoFar()

	for i := 3; i < 6; i++ {
		b.send(key, msgText(key, i))
	}
	got := b.waitBatches(2, 10*time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	require.Len(t, got, 2)
	second := got[1].Batch
	assert.Equal(t, sentTexts(b.sentSoFar()[3:]), texts(second), "the second batch is the second burst, exactly")
	for _, s := range firstSent {
		assert.NotContains(t, ids(second), s.ID, "the second batch re-delivers %q of the first", s.Text)
	}
	assert.Greater(t, second.Generation, first.Batch.Generation)
	assert.NotEqual(t, first.Batch.BatchID, second.BatchID)
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}

func TestSameMillisecond_FiftyConcurrentPostsOneBatch(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	const key = "5511999990003"
	const n = 50
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			b.send(key, msgText(key, i))
		}()
	}
	close(start)
	wg.Wait()
	sent := b.sentSoFar()
	require.Len(t, sent, n, "every POST answered 202")

	got := b.waitDelivered(15 * time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	assertExactlyOnce(t, sent, b.recv.accepted())
	require.Len(t, got, 1, "one burst, one batch:%s", describe(got))
	assert.Len(t, got[0].Batch.Messages, n)

	perMs := map[string]int{}
	for _, m := range got[0].Batch.Messages {
		perMs[m.ReceivedAt]++
	}
	t.Logf("%d messages over %d distinct received_at milliseconds", n, len(perMs))
}

func TestManyUsers_NoBatchMixesUsers(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	const users, each = 100, 5
	var wg sync.WaitGroup
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("user-%03d", u)
			for i := range each {
				b.send(key, msgText(key, i))
			}
		}()
	}
	wg.Wait()
	sent := b.sentSoFar()
	require.Len(t, sent, users*each)

	got := b.waitDelivered(30 * time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	assertExactlyOnce(t, sent, b.recv.accepted())
	require.Len(t, got, users, "one batch per user")
	for _, d := range got {
		assert.Len(t, d.Batch.Messages, each, "batch %s", d.Batch.BatchID)
		var want []string
		for i := range each {
			want = append(want, msgText(d.Batch.Key, i))
		}
		assert.Equal(t, want, texts(d.Batch), "batch %s: the user's own messages, in order", d.Batch.BatchID)
	}
}

func TestNeverPausing_FlushedAtMaxWait(t *testing.T) {
	const quiet, maxWait = 400 * time.Millisecond, time.Second
	b := setup(t, options{QuietWindow: quiet, MaxWait: maxWait})
	const key = "5511999990005"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := range 25 { // one message every 100ms for 2.5s: never quiet for 400ms
		if i > 0 {
			<-tick.C
		}
		b.send(key, msgText(key, i))
	}
	sent := b.sentSoFar()

	got := b.waitDelivered(10 * time.Second)
	b.requireNoNewRequests(quiet + 2*pollInterval)
	assertExactlyOnce(t, sent, b.recv.accepted())
	require.GreaterOrEqual(t, len(got), 3, "2.5s of typing, MAX_WAIT=1s:%s", describe(got))

	firstBatch := got[0]
	assert.Equal(t, batch.ReasonMaxWait, firstBatch.Batch.Reason)
	assert.Equal(t, sent[0].ID, firstBatch.Batch.Messages[0].ID)
	late := firstBatch.At.Sub(sent[0].Start)
	assert.GreaterOrEqual(t, late, maxWait-10*time.Millisecond, "flushed before MAX_WAIT")
	assert.Less(t, late, maxWait+500*time.Millisecond, "flushed long after MAX_WAIT")
	t.Logf("first batch: %d messages, delivered %s after the first POST", len(firstBatch.Batch.Messages), late.Round(time.Millisecond))

	var order []string
	for i, d := range got {
		bt := d.Batch
		t.Logf("batch %s reason=%s messages=%d first_at=%s last_at=%s flushed_at=%s arrived=%s",
			bt.BatchID, bt.Reason, len(bt.Messages), bt.FirstAt, bt.LastAt, bt.FlushedAt, batch.FormatTime(d.At))
		// Claimed by MAX_WAIT after its first message, give or take the
		// machine's load (the benchmark measures lateness properly).
		held := parseTime(t, bt.FlushedAt).Sub(parseTime(t, bt.FirstAt))
		assert.LessOrEqual(t, held, maxWait+500*time.Millisecond, "batch %s held longer than MAX_WAIT", bt.BatchID)
		if i < len(got)-1 {
			assert.Equal(t, batch.ReasonMaxWait, bt.Reason, "batch %s: the user never paused", bt.BatchID)
		}
		if bt.Reason == batch.ReasonMaxWait {
			since := d.At.Sub(parseTime(t, bt.FirstAt))
			assert.GreaterOrEqual(t, since, maxWait-10*time.Millisecond, "batch %s flushed before MAX_WAIT", bt.BatchID)
			assert.Less(t, since, maxWait+500*time.Millisecond, "batch %s flushed long after MAX_WAIT", bt.BatchID)
		}
		order = append(order, texts(bt)...)
	}
	assert.Equal(t, sentTexts(sent), order, "in order across batches")
}

func TestMaxBatchMessages_FlushesAtOnce(t *testing.T) {
	b := setup(t, options{MaxBatchMessages: 5, QuietWindow: 10 * time.Second, MaxWait: 30 * time.Second})
	const key = "5511999990006"
	for i := range 5 {
		b.send(key, msgText(key, i))
	}
	sent := b.sentSoFar()
	got := b.waitBatches(1, 5*time.Second)
	d := got[0]
	assert.Equal(t, batch.ReasonMaxMessages, d.Batch.Reason)
	assert.Equal(t, sentTexts(sent), texts(d.Batch))
	assert.Less(t, d.At.Sub(sent[0].Start), 5*time.Second)
	t.Logf("delivered %s after the 5th message was accepted", d.At.Sub(sent[4].End).Round(time.Millisecond))
	assertExactlyOnce(t, sent, b.recv.accepted())
}

func TestMaxBatchMessages_CapsEveryBatch(t *testing.T) {
	const maxMessages, n = 5, 50
	b := setup(t, options{MaxBatchMessages: maxMessages, QuietWindow: burstWindow})
	const key = "5511999990016"
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			b.send(key, msgText(key, i))
		}()
	}
	close(start)
	wg.Wait()
	require.Len(t, b.sentSoFar(), n)

	got := b.waitDelivered(15 * time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
	assert.GreaterOrEqual(t, len(got), n/maxMessages)
	for _, d := range got {
		assert.LessOrEqual(t, len(d.Batch.Messages), maxMessages, "batch %s is over MAX_BATCH_MESSAGES", d.Batch.BatchID)
		assert.Equal(t, batch.ReasonMaxMessages, d.Batch.Reason, "batch %s", d.Batch.BatchID)
	}
}

func TestDuplicateMessageID_StoredOnce(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow})
	const key = "5511999990007"
	dup := map[string]any{"message_id": "wamid.dup-1"}
	require.Equal(t, http.StatusAccepted, b.post(key, "hello", dup))
	require.Equal(t, http.StatusAccepted, b.post(key, "hello", dup), "a retried POST is accepted again")
	require.Equal(t, http.StatusAccepted, b.post(key, "how are you", map[string]any{"message_id": "wamid.other-1"}))

	got := b.waitBatches(1, 10*time.Second)
	assert.Equal(t, []string{"wamid.dup-1", "wamid.other-1"}, ids(got[0].Batch))

	// The same id again after its batch was delivered: still stored once.
	require.Equal(t, http.StatusAccepted, b.post(key, "hello", dup))
	require.Equal(t, http.StatusAccepted, b.post(key, "new one", map[string]any{"message_id": "wamid.after-1"}))
	got = b.waitBatches(2, 10*time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	require.Len(t, got, 2)
	assert.Equal(t, []string{"wamid.after-1"}, ids(got[1].Batch))
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}
