package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/sink"
)

func TestTwoWorkers_NeverDeliverTheSameBatchTwice(t *testing.T) {
	b := setup(t, options{Workers: 2, QuietWindow: burstWindow})
	const users, each, senders = 200, 3, 50
	keys := make(chan string, users)
	for u := range users {
		keys <- fmt.Sprintf("user-%03d", u)
	}
	close(keys)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				for i := range each {
					b.send(key, msgText(key, i))
				}
			}
		}()
	}
	wg.Wait()
	sent := b.sentSoFar()
	require.Len(t, sent, users*each)

	got := b.waitDelivered(30 * time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	all := b.recv.all()
	assertExactlyOnce(t, sent, all)
	assert.Len(t, all, len(got), "a healthy receiver got redeliveries:%s", describe(all))
	for _, d := range all {
		assert.Equal(t, "1", d.Header.Get(sink.HeaderAttempt), "batch %s", d.Batch.BatchID)
	}
	t.Logf("%d batches for %d users", len(got), users)
}

func TestReceiverFailing_RetriedUntilDelivered(t *testing.T) {
	const failures = 3
	b := setup(t, options{QuietWindow: burstWindow, Receiver: receiverOptions{FailFirst: failures}})
	const key = "5511999990010"
	for i := range 2 {
		b.send(key, msgText(key, i))
	}
	got := b.waitDelivered(15 * time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	require.Len(t, got, 1)
	all := b.recv.all()
	require.Len(t, all, failures+1, "three 503s, then the delivery:%s", describe(all))
	for i, d := range all {
		assert.Equal(t, got[0].Batch.BatchID, d.Batch.BatchID, "request %d: a redelivery keeps its batch_id", i+1)
		assert.Equal(t, d.Batch.BatchID, d.Header.Get(sink.HeaderIdempotencyKey), "request %d", i+1)
		assert.Equal(t, strconv.Itoa(i+1), d.Header.Get(sink.HeaderAttempt), "request %d: X-Lull-Attempt", i+1)
		assert.Equal(t, i+1, d.Batch.Attempt, "request %d: attempt", i+1)
		assert.Equal(t, ids(got[0].Batch), ids(d.Batch), "request %d: the same messages", i+1)
		if i > 0 {
			assert.GreaterOrEqual(t, d.At.Sub(all[i-1].At), 30*time.Millisecond, "request %d: retried without backoff", i+1)
		}
	}
	assert.Greater(t, got[0].Batch.Attempt, 1)
	assertExactlyOnce(t, b.sentSoFar(), all)
}

func TestSignature_WhenSecretSet(t *testing.T) {
	const secret = "e2e-callback-secret"
	b := setup(t, options{Secret: secret})
	const key = "5511999990011"
	for i := range 2 {
		b.send(key, msgText(key, i))
	}
	d := b.waitDelivered(10 * time.Second)[0]
	sig := d.Header.Get(sink.HeaderSignature)
	require.True(t, strings.HasPrefix(sig, "sha256="), "X-Lull-Signature %q", sig)
	assert.True(t, sink.VerifySignature(secret, d.Body, sig), "the signature covers the raw body")
	assert.False(t, sink.VerifySignature("another-secret", d.Body, sig), "another secret must not verify")
	tampered := append([]byte(nil), d.Body...)
	tampered[len(tampered)/2] ^= 1
	assert.False(t, sink.VerifySignature(secret, tampered, sig), "a changed body must not verify")
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}

func TestWorkerKilled_BatchRedrivenByAnother(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow, Receiver: receiverOptions{HoldFirst: true}})
	const key = "5511999990012"
	for i := range 3 {
		b.send(key, msgText(key, i))
	}
	select {
	case <-b.recv.held:
	case <-time.After(10 * time.Second):
		t.Fatalf("the batch never reached the receiver:%s", describe(b.recv.all()))
	}
	b.workers[0].kill() // kill -9 while the receiver holds its delivery
	killed := time.Now()
	held := b.recv.all()[0]

	b.startWorker()
	got := b.waitDelivered(lease + 10*time.Second)
	took := time.Since(killed)
	require.Len(t, got, 1)
	d := got[0]
	assert.Equal(t, held.Batch.BatchID, d.Batch.BatchID, "the same batch, by id")
	assert.Equal(t, ids(held.Batch), ids(d.Batch), "the same batch, by messages")
	assert.Equal(t, held.Batch.Reason, d.Batch.Reason)
	assert.Greater(t, d.Batch.Attempt, 1, "the re-drive counts as another attempt")
	assert.Less(t, took, lease+3*time.Second, "re-driven long after the lease expired")
	t.Logf("re-driven %s after the kill (LEASE=%s), attempt %d", took.Round(time.Millisecond), lease, d.Batch.Attempt)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}

func TestWorkerSIGTERM_HandsItsBatchToAnother(t *testing.T) {
	b := setup(t, options{QuietWindow: burstWindow, Receiver: receiverOptions{HoldFirst: true}})
	const key = "5511999990014"
	for i := range 3 {
		b.send(key, msgText(key, i))
	}
	select {
	case <-b.recv.held:
	case <-time.After(10 * time.Second):
		t.Fatalf("the batch never reached the receiver:%s", describe(b.recv.all()))
	}
	held := b.recv.all()[0]
	stopped := time.Now()
	code, took, err := b.workers[0].terminate(stopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "worker exit status after SIGTERM")
	assert.Less(t, took, 5*time.Second, "worker took too long to exit")

	b.startWorker()
	got := b.waitDelivered(lease + 10*time.Second)
	since := time.Since(stopped)
	require.Len(t, got, 1)
	assert.Equal(t, held.Batch.BatchID, got[0].Batch.BatchID, "the same batch, by id")
	assert.Equal(t, ids(held.Batch), ids(got[0].Batch), "the same batch, by messages")
	// Released at shutdown, not left to expire: the next worker takes it
	// well before a LEASE would have run out.
	assert.Less(t, since, lease-500*time.Millisecond, "the batch waited for its lease to expire")
	t.Logf("worker exited in %s; batch re-driven %s after SIGTERM", took.Round(time.Millisecond), since.Round(time.Millisecond))
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}
