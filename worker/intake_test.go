package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/queue"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// While Redis does not answer at all, the worker hands the inbound queue
// over until the message it retries was given back handoverDeliveries
// times (each handover adds one), then keeps it and waits; once Redis
// answers, the message is appended once.
func TestIntake_HandsOverUntilTheMessageWasGivenBackEnough(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "intake")
	testenv.CleanupBroker(t, testenv.AMQPURL(), ns)
	var logs testenv.LogBuffer
	log := logs.Logger()
	opts := testenv.StoreOptions()
	opts.RedisTimeout = 100 * time.Millisecond
	st := store.New(redis.Client, ns, opts)
	app := appender.New(st, appender.Options{Lanes: 1, Logger: log})
	consumer, err := queue.NewConsumer(testenv.AMQPURL(), ns, func(m queue.Message) { app.Handle(m.Body, m) },
		queue.ConsumerOptions{Prefetch: 10, Logger: log, Inbound: testenv.Topology()})
	require.NoError(t, err)
	require.NoError(t, app.Start(context.Background()))
	require.NoError(t, consumer.Start(context.Background()))
	var counted atomic.Int32
	in := newIntake(app, consumer, 300*time.Millisecond, log, func() { counted.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	go in.watch(ctx)
	t.Cleanup(func() {
		cancel()
		<-in.done
		app.Stop()
		consumer.Stop()
	})
	require.Eventually(t, consumer.Ready, 10*time.Second, 10*time.Millisecond)

	pub, err := queue.NewPublisher(context.Background(), testenv.AMQPURL(), ns,
		queue.PublisherOptions{ConfirmTimeout: 5 * time.Second, Inbound: testenv.Topology(), Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	e, err := ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"oi","message_id":"m1"}`), time.Now(), nil)
	require.NoError(t, err)
	body, err := e.Encode()
	require.NoError(t, err)
	redis.Freeze(t)
	require.Eventually(t, func() bool { return pub.Publish(context.Background(), "m1", body) == nil }, 10*time.Second, 50*time.Millisecond)

	handovers := func() int { return strings.Count(logs.String(), "handing the inbound queue over") }
	require.Eventually(t, func() bool { return handovers() == handoverDeliveries }, 30*time.Second, 20*time.Millisecond, "%s", &logs)
	time.Sleep(1500 * time.Millisecond) // 5 x INTAKE_HANDOVER_AFTER
	require.Equal(t, handoverDeliveries, handovers(), "no more handovers once the message was given back enough")
	require.EqualValues(t, handoverDeliveries, counted.Load(), "each handover observed")
	_, deliveries := app.Stuck()
	require.Equal(t, handoverDeliveries, deliveries)

	redis.Resume()
	require.Eventually(t, func() bool { since, _ := app.Stuck(); return since.IsZero() }, 10*time.Second, 20*time.Millisecond)
	n, err := redis.Client.Do(context.Background(), redis.Client.B().Llen().Key(keys.New(ns).Conversation("u").Buf).Build()).AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "appended once")
}
