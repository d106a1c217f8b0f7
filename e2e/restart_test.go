package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stream posts to keys round-robin, one message every gap per sender, until
// stop is closed. Like a real sender it retries a POST that was not
// answered 2xx with the same message_id (the api dedupes it), for up to
// 15s. wait returns how many retries there were.
func (b *bundle) stream(keys []string, senders int, gap time.Duration, stop <-chan struct{}) (wait func() int64) {
	var retries atomic.Int64
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(gap):
				}
				key := keys[(s+i*senders)%len(keys)]
				text, id := fmt.Sprintf("%s from %d #%d", key, s, i), fmt.Sprintf("s%d-%d", s, i)
				first := time.Now()
				for b.postSince(first, key, text, map[string]any{"message_id": id})/100 != 2 {
					if time.Since(first) > 15*time.Second {
						b.tb.Errorf("POST %s %s: not accepted within 15s", key, id)
						return
					}
					retries.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return func() int64 { wg.Wait(); return retries.Load() }
}

func TestWorkerCrashesAndRestarts_LoseNothing(t *testing.T) {
	// Short windows: batches are flushed and in flight when the workers go.
	b := setup(t, options{QuietWindow: 200 * time.Millisecond, MaxWait: 400 * time.Millisecond})
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%02d", i)
	}
	stop := make(chan struct{})
	wait := b.stream(keys, 8, 5*time.Millisecond, stop)

	time.Sleep(700 * time.Millisecond) // messages flowing, batches in flight
	b.workers[0].kill()
	b.startWorker()
	time.Sleep(700 * time.Millisecond)
	code, _, err := b.workers[1].terminate(stopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "worker2 exit status after SIGTERM")
	b.startWorker()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	assert.Zero(t, wait(), "the api refused messages while only workers restarted")

	sent := b.sentSoFar()
	b.waitDelivered(lease + 15*time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	assertExactlyOnce(t, sent, b.recv.accepted())
	t.Logf("%d messages, %d deliveries, %d distinct batches", len(sent), len(b.recv.accepted()), len(distinct(b.recv.accepted())))
}

func TestAPIRestart_EveryAcceptedMessageDelivered(t *testing.T) {
	b := setup(t, options{})
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%02d", i)
	}
	stop := make(chan struct{})
	wait := b.stream(keys, 8, 5*time.Millisecond, stop)

	time.Sleep(500 * time.Millisecond)
	code, took, err := b.api.terminate(stopTimeout) // SIGTERM with requests under way
	require.NoError(t, err)
	assert.Equal(t, 0, code, "api exit status after SIGTERM")
	t.Logf("api exited in %s", took.Round(time.Millisecond))
	b.api = b.start("api2", bins.api)
	b.waitReady()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	retries := wait()

	sent := b.sentSoFar()
	b.waitDelivered(15 * time.Second)
	b.requireNoNewRequests(b.opts.QuietWindow + 2*pollInterval)
	assertExactlyOnce(t, sent, b.recv.accepted())
	t.Logf("%d messages accepted, %d POSTs retried while the api restarted", len(sent), retries)
	if resp, err := b.client.Get(b.url("/healthz")); assert.NoError(t, err) {
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
}
