package queue_test

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// TestPublisher_MemoryAlarmIsNotReadyAndFailsFast raises the memory alarm
// of a broker of the test's own: the broker blocks the publisher's
// connection and takes nothing. The publisher must say so (not ready, with
// the broker's reason) without a publish waiting, refuse publishes at once
// instead of after ConfirmTimeout, and recover when the alarm clears.
func TestPublisher_MemoryAlarmIsNotReadyAndFailsFast(t *testing.T) {
	url, node := testenv.StartRabbitNode(t)
	alarmed := &testBundle{
		url: url,
		ns:  testenv.Namespace(t, "queue-alarm"),
		log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	const confirmTimeout = 5 * time.Second
	p := alarmed.publisher(t, queue.PublisherOptions{ConfirmTimeout: confirmTimeout, ProbeInterval: 200 * time.Millisecond})
	publish(t, p, "before", `{}`)
	require.Equal(t, queue.Health{Ready: true}, p.Health())
	// A second publisher, to be closed while blocked.
	closing, err := queue.NewPublisher(context.Background(), url, alarmed.ns, queue.PublisherOptions{
		ConfirmTimeout: confirmTimeout, ProbeInterval: 200 * time.Millisecond, Inbound: testenv.Topology(), Logger: alarmed.log,
		Name: "lull-publisher-closing",
	})
	require.NoError(t, err)
	require.Eventually(t, closing.Ready, waitFor, 10*time.Millisecond, "second publisher never became ready")

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, node.Alarm(ctx))
	// No publish here: an idle publisher must notice the block by itself,
	// or /readyz keeps routing traffic to an api that can take none.
	require.Eventually(t, func() bool { return !p.Ready() }, 15*time.Second, 10*time.Millisecond,
		"publisher still ready under a memory alarm")
	require.Equal(t, queue.Health{Ready: false, Reason: "blocked: low on memory"}, p.Health())

	start := time.Now()
	err = p.Publish(context.Background(), "during", []byte(`{}`))
	require.ErrorIs(t, err, queue.ErrUnavailable)
	require.Contains(t, err.Error(), "low on memory")
	require.Less(t, time.Since(start), confirmTimeout/10, "a blocked publisher must refuse at once, not wait for the confirm")

	// The broker reads nothing from a blocked connection, connection.close
	// included: Close (the api's shutdown) must not wait for it.
	require.Eventually(t, func() bool { return !closing.Ready() }, 15*time.Second, 10*time.Millisecond)
	start = time.Now()
	closeCtx, cancelClose := context.WithTimeout(context.Background(), waitFor)
	defer cancelClose()
	require.NoError(t, closing.Close(closeCtx))
	require.Less(t, time.Since(start), 5*time.Second, "Close hung on a blocked connection")

	require.NoError(t, node.ClearAlarm(ctx))
	require.Eventually(t, p.Ready, waitFor, 10*time.Millisecond, "publisher not ready after the alarm cleared")
	publish(t, p, "after", `{}`)
	require.Equal(t, queue.Health{Ready: true}, p.Health())
}

// TestPublisher_StalledLinkIsNotReadyUntilAConfirm stalls the link to the
// broker (a half-open connection: nothing is closed, nothing arrives). A
// publish that times out waiting for its confirm makes the publisher not
// ready, also when it is the caller's deadline (the api's, equal to
// ConfirmTimeout) that ends the wait; it is ready again once a confirm
// comes, without any caller publishing.
func TestPublisher_StalledLinkIsNotReadyUntilAConfirm(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	u, err := url.Parse(tb.url)
	require.NoError(t, err)
	proxy := testenv.StartStallProxy(t, u.Host)
	// The publisher goes through the proxy; the purge at the end does not.
	via := *tb
	via.url = proxy.AMQPURL(t, tb.url)
	const confirmTimeout = 500 * time.Millisecond
	p := via.publisher(t, queue.PublisherOptions{ConfirmTimeout: confirmTimeout, ProbeInterval: 100 * time.Millisecond})
	publish(t, p, "before", `{}`)

	proxy.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
	defer cancel()
	err = p.Publish(ctx, "stalled", []byte(`{}`))
	require.Error(t, err)
	require.Eventually(t, func() bool { return !p.Ready() }, 2*confirmTimeout, 5*time.Millisecond,
		"publisher still ready after a confirm timed out")
	require.Equal(t, queue.Health{Ready: false, Reason: "confirm timeout"}, p.Health())

	proxy.Resume()
	require.Eventually(t, p.Ready, waitFor, 10*time.Millisecond, "publisher not ready once confirms come again")
	publish(t, p, "after", `{}`)
}

func TestPublisher_HealthSaysDisconnected(t *testing.T) {
	t.Parallel()
	p, err := queue.NewPublisher(context.Background(), "amqp://guest:guest@127.0.0.1:1/", "test-queue-health",
		queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Inbound: testenv.Topology(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	require.NoError(t, err)
	require.Equal(t, queue.Health{Ready: false, Reason: "disconnected"}, p.Health())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	require.Equal(t, queue.Health{Ready: false, Reason: "closed"}, p.Health())
}
