package queue_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/testenv"
)

// retentionNS is a namespace of the test's own; its queues and exchange are
// deleted when the test ends.
func retentionNS(t *testing.T) string {
	t.Helper()
	ns := testenv.Namespace(t, "retention")
	testenv.CleanupBroker(t, testenv.AMQPURL(), ns)
	return ns
}

func dialBroker(t *testing.T) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// badRetentions are retentions NewPublisher and NewConsumer refuse: one
// part of the configuration's missing, negative or under a millisecond.
func badRetentions() []queue.TopologyOptions {
	retention := testenv.Topology()
	return []queue.TopologyOptions{
		{},
		{DeadLetterTTL: retention.DeadLetterTTL},
		{DeadLetterMax: retention.DeadLetterMax},
		{DeadLetterTTL: -time.Hour, DeadLetterMax: retention.DeadLetterMax},
		{DeadLetterTTL: time.Microsecond, DeadLetterMax: retention.DeadLetterMax},
		{DeadLetterTTL: retention.DeadLetterTTL, DeadLetterMax: -1},
	}
}

// deadLetterN publishes n messages to ns's dead-letter exchange, confirmed,
// as the inbound queue does when it dead-letters.
func deadLetterN(t *testing.T, conn *amqp.Connection, ns string, n int) {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	require.NoError(t, ch.Confirm(false))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, queue.DeadLetterExchange(ns), "", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte{byte('a' + i)}})
		require.NoError(t, err)
		ok, err := c.WaitContext(ctx)
		require.NoError(t, err)
		require.True(t, ok, "confirmed")
	}
}

func deadDepth(t *testing.T, conn *amqp.Connection, ns string) int {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue.DeadLetterQueue(ns), true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

// declareLegacy declares ns's dead-letter exchange and queue as deployments
// from before the retention did: a quorum queue without x-message-ttl or
// x-max-length.
func declareLegacy(t *testing.T, conn *amqp.Connection, ns string) {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	require.NoError(t, ch.ExchangeDeclare(queue.DeadLetterExchange(ns), amqp.ExchangeFanout, true, false, false, false, nil))
	_, err = ch.QueueDeclare(queue.DeadLetterQueue(ns), true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(queue.DeadLetterQueue(ns), "", queue.DeadLetterExchange(ns), false, nil))
}

func TestInboundTopology_DeadLetterQueueIsBounded(t *testing.T) {
	t.Parallel()
	conn := dialBroker(t)
	var logs testenv.LogBuffer

	// x-max-length: beyond it the oldest go.
	ns := retentionNS(t)
	declare := queue.InboundTopology(ns, queue.TopologyOptions{DeadLetterTTL: time.Hour, DeadLetterMax: 3, Logger: logs.Logger()})
	require.NoError(t, declare(conn))
	require.NoError(t, declare(conn), "idempotent")
	deadLetterN(t, conn, ns, 5)
	require.Eventually(t, func() bool { return deadDepth(t, conn, ns) == 3 }, 10*time.Second, 20*time.Millisecond,
		"x-max-length 3 keeps 3 of 5")

	// x-message-ttl: a dead letter is dropped once it is older.
	short := retentionNS(t)
	require.NoError(t, queue.InboundTopology(short, queue.TopologyOptions{DeadLetterTTL: 200 * time.Millisecond, DeadLetterMax: 10, Logger: logs.Logger()})(conn))
	deadLetterN(t, conn, short, 2)
	require.Eventually(t, func() bool { return deadDepth(t, conn, short) == 0 }, 15*time.Second, 50*time.Millisecond,
		"x-message-ttl 200ms drops them")

	require.Empty(t, logs.String(), "a fresh declaration warns about nothing")
	require.False(t, conn.IsClosed())
}

// A deployment from before the retention has the dead-letter queue without
// its arguments; redeclaring it with them is a PRECONDITION_FAILED that
// closes the channel. lull takes the queue as it is, warns once, and runs.
func TestInboundTopology_ExistingDeadLetterQueueKeepsItsArguments(t *testing.T) {
	t.Parallel()
	ns := retentionNS(t)
	conn := dialBroker(t)
	declareLegacy(t, conn, ns)
	var logs testenv.LogBuffer
	log := logs.Logger()
	opts := queue.TopologyOptions{DeadLetterTTL: time.Hour, DeadLetterMax: 2, Logger: log}

	require.NoError(t, queue.InboundTopology(ns, opts)(conn))
	require.NoError(t, queue.InboundTopology(ns, opts)(conn), "again, as on a reconnect")
	require.False(t, conn.IsClosed(), "the connection survives the refused declaration")

	// The api's publisher and the worker's consumer both get going.
	p, err := queue.NewPublisher(context.Background(), testenv.AMQPURL(), ns, queue.PublisherOptions{ConfirmTimeout: testConfirmTimeout, Logger: log, Inbound: opts})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	c, err := queue.NewConsumer(testenv.AMQPURL(), ns, func(m queue.Message) { _ = m.Settle(queue.Ack) },
		queue.ConsumerOptions{Prefetch: prefetch, Logger: log, Inbound: opts})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() {
		c.Stop()
		require.NoError(t, c.Err())
	})
	require.Eventually(t, func() bool { return p.Ready() && c.Ready() }, 20*time.Second, 10*time.Millisecond,
		"publisher and consumer ready: %s", &logs)

	// The queue kept its old arguments (no limit), and is still bound.
	deadLetterN(t, conn, ns, 4)
	require.Eventually(t, func() bool { return deadDepth(t, conn, ns) == 4 }, 10*time.Second, 20*time.Millisecond)

	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "dead-letter queue exists with other arguments"), "warned once: %s", out)
	require.Contains(t, out, "queue="+queue.DeadLetterQueue(ns))
	require.Contains(t, out, "rabbitmqctl set_policy")
	require.Contains(t, out, "--if-empty "+queue.DeadLetterQueue(ns))
	require.Contains(t, out, "PRECONDITION_FAILED")
}

func TestRetentionPolicyCommand(t *testing.T) {
	t.Parallel()
	require.Equal(t,
		`rabbitmqctl set_policy --apply-to queues lull-dead-letter-retention '^lull\.inbound\.dead$' '{"max-length":10000,"message-ttl":2592000000}'`,
		queue.RetentionPolicyCommand("lull", "/", queue.TopologyOptions{DeadLetterTTL: 720 * time.Hour, DeadLetterMax: 10000}))
	require.Equal(t,
		`rabbitmqctl set_policy -p 'prod' --apply-to queues a-b.c-dead-letter-retention '^a-b\.c\.inbound\.dead$' '{"max-length":5,"message-ttl":60000}'`,
		queue.RetentionPolicyCommand("a-b.c", "prod", queue.TopologyOptions{DeadLetterTTL: time.Minute, DeadLetterMax: 5}))
}

// The command the warning prints really bounds an existing queue. It needs
// rabbitmqctl on the broker ($LULL_RABBITMQCTL replaces the command, e.g.
// "docker compose exec -T rabbitmq rabbitmqctl") and skips without it.
func TestRetentionPolicyCommand_BoundsAnExistingQueue(t *testing.T) {
	t.Parallel()
	ctl := os.Getenv("LULL_RABBITMQCTL")
	if ctl == "" {
		if _, err := exec.LookPath("rabbitmqctl"); err != nil {
			t.Skip("rabbitmqctl not found; set LULL_RABBITMQCTL to run this test")
		}
		ctl = "rabbitmqctl"
	}
	ns := retentionNS(t)
	conn := dialBroker(t)
	declareLegacy(t, conn, ns)
	cmd := queue.RetentionPolicyCommand(ns, conn.Config.Vhost, queue.TopologyOptions{DeadLetterTTL: time.Hour, DeadLetterMax: 2})
	run := func(script string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput()
		require.NoError(t, err, "%s: %s", script, out)
	}
	run(ctl + strings.TrimPrefix(cmd, "rabbitmqctl"))
	t.Cleanup(func() { run(ctl + " clear_policy " + ns + "-dead-letter-retention") })

	deadLetterN(t, conn, ns, 5)
	require.Eventually(t, func() bool { return deadDepth(t, conn, ns) == 2 }, 15*time.Second, 50*time.Millisecond,
		"the policy's max-length applies")
}
