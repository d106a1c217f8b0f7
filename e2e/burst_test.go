package e2e

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/sink"
)

func TestBurst_BecomesOneBatchInSendOrder(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	const key = "5511999990001"
	for i := range 5 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // the user typing: gaps well below QUIET_WINDOW
		}
		fields := map[string]any{}
		if i == 2 {
			fields["metadata"] = map[string]any{"push_name": "Ana", "n": 2}
		}
		require.Equal(t, http.StatusAccepted, b.Post(key, harness.MsgText(key, i), fields))
	}
	sent := b.SentSoFar()

	got := b.WaitBatches(1, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1, "one burst, one batch")
	d := got[0]
	bt := d.Batch
	harness.AssertExactlyOnce(t, sent, b.Recv.Accepted())
	assert.Equal(t, harness.SentTexts(sent), harness.Texts(bt), "all five, in send order")
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
	firstAt, lastAt, flushedAt := harness.ParseTime(t, bt.FirstAt), harness.ParseTime(t, bt.LastAt), harness.ParseTime(t, bt.FlushedAt)
	assert.Equal(t, bt.Messages[0].ReceivedAt, bt.FirstAt)
	assert.Equal(t, bt.Messages[4].ReceivedAt, bt.LastAt)
	assert.GreaterOrEqual(t, lastAt.Sub(firstAt), 4*50*time.Millisecond)
	assert.GreaterOrEqual(t, flushedAt.Sub(lastAt), b.Opts.QuietWindow, "flushed before the quiet window passed")
	assert.Less(t, d.At.Sub(lastAt.Add(b.Opts.QuietWindow)), time.Second, "delivered long after its deadline")
}

func TestTwoBursts_SecondHoldsNoMessageOfFirst(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	const key = "5511999990002"
	b.SendN(key, 3)
	first := b.WaitBatches(1, 10*time.Second)[0]
	require.Len(t, first.Batch.Messages, 3)
	firstSent := b.SentSoFar()

	for i := 3; i < 6; i++ {
		b.Send(key, harness.MsgText(key, i))
	}
	got := b.WaitBatches(2, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 2)
	second := got[1].Batch
	assert.Equal(t, harness.SentTexts(b.SentSoFar()[3:]), harness.Texts(second), "the second batch is the second burst, exactly")
	for _, s := range firstSent {
		assert.NotContains(t, harness.IDs(second), s.ID, "the second batch re-delivers %q of the first", s.Text)
	}
	assert.Greater(t, second.Generation, first.Batch.Generation)
	assert.NotEqual(t, first.Batch.BatchID, second.BatchID)
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}

func TestSameMillisecond_FiftyConcurrentPostsOneBatch(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	const key = "5511999990003"
	const n = 50
	b.SendConcurrently(key, n)
	sent := b.SentSoFar()
	require.Len(t, sent, n, "every POST answered 202")

	got := b.WaitDelivered(15 * time.Second)
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, sent, b.Recv.Accepted())
	require.Len(t, got, 1, "one burst, one batch:%s", harness.Describe(got))
	assert.Len(t, got[0].Batch.Messages, n)

	perMs := map[string]int{}
	for _, m := range got[0].Batch.Messages {
		perMs[m.ReceivedAt]++
	}
	t.Logf("%d messages over %d distinct received_at milliseconds", n, len(perMs))
}

func TestManyUsers_NoBatchMixesUsers(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	const users, each = 100, 5
	b.SendEach(harness.Keys("user-%03d", users), each, users)
	sent := b.SentSoFar()
	require.Len(t, sent, users*each)

	got := b.WaitDelivered(30 * time.Second)
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, sent, b.Recv.Accepted())
	require.Len(t, got, users, "one batch per user")
	for _, d := range got {
		assert.Len(t, d.Batch.Messages, each, "batch %s", d.Batch.BatchID)
		var want []string
		for i := range each {
			want = append(want, harness.MsgText(d.Batch.Key, i))
		}
		assert.Equal(t, want, harness.Texts(d.Batch), "batch %s: the user's own messages, in order", d.Batch.BatchID)
	}
}

func TestNeverPausing_FlushedAtMaxWait(t *testing.T) {
	const quiet, maxWait = 400 * time.Millisecond, time.Second
	b := harness.Setup(t, harness.Options{QuietWindow: quiet, MaxWait: maxWait})
	const key = "5511999990005"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := range 25 { // one message every 100ms for 2.5s: never quiet for 400ms
		if i > 0 {
			<-tick.C
		}
		b.Send(key, harness.MsgText(key, i))
	}
	sent := b.SentSoFar()

	got := b.WaitDelivered(10 * time.Second)
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, sent, b.Recv.Accepted())
	require.GreaterOrEqual(t, len(got), 3, "2.5s of typing, MAX_WAIT=1s:%s", harness.Describe(got))

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
		held := harness.ParseTime(t, bt.FlushedAt).Sub(harness.ParseTime(t, bt.FirstAt))
		assert.LessOrEqual(t, held, maxWait+500*time.Millisecond, "batch %s held longer than MAX_WAIT", bt.BatchID)
		if i < len(got)-1 {
			assert.Equal(t, batch.ReasonMaxWait, bt.Reason, "batch %s: the user never paused", bt.BatchID)
		}
		if bt.Reason == batch.ReasonMaxWait {
			since := d.At.Sub(harness.ParseTime(t, bt.FirstAt))
			assert.GreaterOrEqual(t, since, maxWait-10*time.Millisecond, "batch %s flushed before MAX_WAIT", bt.BatchID)
			assert.Less(t, since, maxWait+500*time.Millisecond, "batch %s flushed long after MAX_WAIT", bt.BatchID)
		}
		order = append(order, harness.Texts(bt)...)
	}
	assert.Equal(t, harness.SentTexts(sent), order, "in order across batches")
}

func TestMaxBatchMessages_FlushesAtOnce(t *testing.T) {
	b := harness.Setup(t, harness.Options{MaxBatchMessages: 5, QuietWindow: 10 * time.Second, MaxWait: 30 * time.Second})
	const key = "5511999990006"
	b.SendN(key, 5)
	sent := b.SentSoFar()
	got := b.WaitBatches(1, 5*time.Second)
	d := got[0]
	assert.Equal(t, batch.ReasonMaxMessages, d.Batch.Reason)
	assert.Equal(t, harness.SentTexts(sent), harness.Texts(d.Batch))
	assert.Less(t, d.At.Sub(sent[0].Start), 5*time.Second)
	t.Logf("delivered %s after the 5th message was accepted", d.At.Sub(sent[4].End).Round(time.Millisecond))
	harness.AssertExactlyOnce(t, sent, b.Recv.Accepted())
}

func TestMaxBatchMessages_CapsEveryBatch(t *testing.T) {
	const maxMessages, n = 5, 50
	b := harness.Setup(t, harness.Options{MaxBatchMessages: maxMessages, QuietWindow: harness.BurstWindow})
	const key = "5511999990016"
	b.SendConcurrently(key, n)
	require.Len(t, b.SentSoFar(), n)

	got := b.WaitDelivered(15 * time.Second)
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
	assert.GreaterOrEqual(t, len(got), n/maxMessages)
	for _, d := range got {
		assert.LessOrEqual(t, len(d.Batch.Messages), maxMessages, "batch %s is over MAX_BATCH_MESSAGES", d.Batch.BatchID)
		if len(d.Batch.Messages) == maxMessages {
			assert.Equal(t, batch.ReasonMaxMessages, d.Batch.Reason, "batch %s", d.Batch.BatchID)
			continue
		}
		// A smaller one is the rest of a slice (a buffer claimed over the
		// cap), due at once (the messages that join it before its claim
		// keep it so), or the last of the burst, left for its quiet window.
		assert.Contains(t, []string{batch.ReasonMaxMessages, batch.ReasonQuiet}, d.Batch.Reason, "batch %s", d.Batch.BatchID)
	}
}

func TestDuplicateMessageID_StoredOnce(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	const key = "5511999990007"
	dup := map[string]any{"message_id": "wamid.dup-1"}
	require.Equal(t, http.StatusAccepted, b.Post(key, "hello", dup))
	require.Equal(t, http.StatusAccepted, b.Post(key, "hello", dup), "a retried POST is accepted again")
	require.Equal(t, http.StatusAccepted, b.Post(key, "how are you", map[string]any{"message_id": "wamid.other-1"}))

	got := b.WaitBatches(1, 10*time.Second)
	assert.Equal(t, []string{"wamid.dup-1", "wamid.other-1"}, harness.IDs(got[0].Batch))

	// The same id again after its batch was delivered: still stored once.
	require.Equal(t, http.StatusAccepted, b.Post(key, "hello", dup))
	require.Equal(t, http.StatusAccepted, b.Post(key, "new one", map[string]any{"message_id": "wamid.after-1"}))
	got = b.WaitBatches(2, 10*time.Second)
	b.RequireQuiet()
	require.Len(t, got, 2)
	assert.Equal(t, []string{"wamid.after-1"}, harness.IDs(got[1].Batch))
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}
