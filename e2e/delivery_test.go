package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/sink"
)

func TestTwoWorkers_NeverDeliverTheSameBatchTwice(t *testing.T) {
	b := harness.Setup(t, harness.Options{Workers: 2, QuietWindow: harness.BurstWindow})
	const users, each, senders = 200, 3, 50
	b.SendEach(harness.Keys("user-%03d", users), each, senders)
	sent := b.SentSoFar()
	require.Len(t, sent, users*each)

	got := b.WaitDelivered(30 * time.Second)
	b.RequireQuiet()
	all := b.Recv.All()
	harness.AssertExactlyOnce(t, sent, all)
	assert.Len(t, all, len(got), "a healthy receiver got redeliveries:%s", harness.Describe(all))
	for _, d := range all {
		assert.Equal(t, "1", d.Header.Get(sink.HeaderAttempt), "batch %s", d.Batch.BatchID)
	}
	t.Logf("%d batches for %d users", len(got), users)
}

func TestReceiverFailing_RetriedUntilDelivered(t *testing.T) {
	const failures = 3
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Receiver: harness.ReceiverOptions{FailFirst: failures}})
	const key = "5511999990010"
	b.SendN(key, 2)
	got := b.WaitDelivered(15 * time.Second)
	b.RequireQuiet()
	require.Len(t, got, 1)
	all := b.Recv.All()
	require.Len(t, all, failures+1, "three 503s, then the delivery:%s", harness.Describe(all))
	for i, d := range all {
		assert.Equal(t, got[0].Batch.BatchID, d.Batch.BatchID, "request %d: a redelivery keeps its batch_id", i+1)
		assert.Equal(t, d.Batch.BatchID, d.Header.Get(sink.HeaderIdempotencyKey), "request %d", i+1)
		assert.Equal(t, strconv.Itoa(i+1), d.Header.Get(sink.HeaderAttempt), "request %d: X-Lull-Attempt", i+1)
		assert.Equal(t, i+1, d.Batch.Attempt, "request %d: attempt", i+1)
		assert.Equal(t, harness.IDs(got[0].Batch), harness.IDs(d.Batch), "request %d: the same messages", i+1)
		if i > 0 {
			assert.GreaterOrEqual(t, d.At.Sub(all[i-1].At), 30*time.Millisecond, "request %d: retried without backoff", i+1)
		}
	}
	assert.Greater(t, got[0].Batch.Attempt, 1)
	harness.AssertExactlyOnce(t, b.SentSoFar(), all)
}

func TestSignature_WhenSecretSet(t *testing.T) {
	const secret = "e2e-callback-secret"
	b := harness.Setup(t, harness.Options{Secret: secret})
	const key = "5511999990011"
	b.SendN(key, 2)
	d := b.WaitDelivered(10 * time.Second)[0]
	sig := d.Header.Get(sink.HeaderSignature)
	require.True(t, strings.HasPrefix(sig, "sha256="), "X-Lull-Signature %q", sig)
	assert.True(t, hmacsig.Verify(d.Body, sig, secret) == nil, "the signature covers the raw body")
	assert.False(t, hmacsig.Verify(d.Body, sig, "another-secret") == nil, "another secret must not verify")
	tampered := append([]byte(nil), d.Body...)
	tampered[len(tampered)/2] ^= 1
	assert.False(t, hmacsig.Verify(tampered, sig, secret) == nil, "a changed body must not verify")
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}

// holdBatch sets up a deployment whose receiver holds its first request,
// sends key three messages and returns once their batch is held.
func holdBatch(t *testing.T, key string) (*harness.Deployment, harness.Received) {
	t.Helper()
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow, Receiver: harness.ReceiverOptions{HoldFirst: true}})
	b.SendN(key, 3)
	return b, b.WaitHeld(10 * time.Second)
}

func TestWorkerKilled_BatchRedrivenByAnother(t *testing.T) {
	b, held := holdBatch(t, "5511999990012")
	b.Workers[0].Kill() // kill -9 while the receiver holds its delivery
	killed := time.Now()

	b.StartWorker()
	got := b.WaitDelivered(harness.Lease + 10*time.Second)
	took := time.Since(killed)
	require.Len(t, got, 1)
	d := got[0]
	assert.Equal(t, held.Batch.BatchID, d.Batch.BatchID, "the same batch, by id")
	assert.Equal(t, harness.IDs(held.Batch), harness.IDs(d.Batch), "the same batch, by messages")
	assert.Equal(t, held.Batch.Reason, d.Batch.Reason)
	assert.Greater(t, d.Batch.Attempt, 1, "the re-drive counts as another attempt")
	assert.Less(t, took, harness.Lease+3*time.Second, "re-driven long after the lease expired")
	t.Logf("re-driven %s after the kill (LEASE=%s), attempt %d", took.Round(time.Millisecond), harness.Lease, d.Batch.Attempt)
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}

func TestWorkerSIGTERM_HandsItsBatchToAnother(t *testing.T) {
	b, held := holdBatch(t, "5511999990014")
	stopped := time.Now()
	code, took, err := b.Workers[0].Terminate(harness.StopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "worker exit status after SIGTERM")
	assert.Less(t, took, 5*time.Second, "worker took too long to exit")

	b.StartWorker()
	got := b.WaitDelivered(harness.Lease + 10*time.Second)
	since := time.Since(stopped)
	require.Len(t, got, 1)
	assert.Equal(t, held.Batch.BatchID, got[0].Batch.BatchID, "the same batch, by id")
	assert.Equal(t, harness.IDs(held.Batch), harness.IDs(got[0].Batch), "the same batch, by messages")
	// Released at shutdown, not left to expire: the next worker takes it
	// well before a LEASE would have run out.
	assert.Less(t, since, harness.Lease-500*time.Millisecond, "the batch waited for its lease to expire")
	t.Logf("worker exited in %s; batch re-driven %s after SIGTERM", took.Round(time.Millisecond), since.Round(time.Millisecond))
	b.RequireQuiet()
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
}

// A message in the inbound queue that the worker can never decode goes to
// the dead-letter queue at once, and the messages around it are delivered.
func TestPoisonMessage_DeadLetteredWorkerKeepsGoing(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	const key = "5511999990066"
	b.Send(key, harness.MsgText(key, 0))

	for _, body := range []string{`{not json`, `{"key":"","message":{"id":"x"}}`, `{"key":"k","kind":"explode","message":{"id":"x"}}`} {
		b.PublishInbound("poison", []byte(body))
	}
	b.Send(key, harness.MsgText(key, 1))

	b.WaitDelivered(10 * time.Second)
	harness.AssertExactlyOnce(t, b.SentSoFar(), b.Recv.Accepted())
	harness.WaitUntil(t, 10*time.Second, "3 poison messages in the dead-letter queue", func() bool {
		q, err := b.QueueInfo(queue.DeadLetterQueue(b.NS))
		return err == nil && q.Messages == 3
	})
	messages, _, err := b.QueueState()
	require.NoError(t, err)
	require.Zero(t, messages, "nothing left in the inbound queue: no endless requeue")
}
