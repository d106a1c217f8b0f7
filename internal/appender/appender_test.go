package appender_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/appender"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

// settled records how a delivery was settled (it stands for a RabbitMQ
// delivery; the broker itself is exercised in internal/queue and e2e).
type settled struct {
	mu  sync.Mutex
	how []string
}

func (s *settled) Ack() error        { return s.add("ack") }
func (s *settled) Requeue() error    { return s.add("requeue") }
func (s *settled) DeadLetter() error { return s.add("dead-letter") }
func (s *settled) add(h string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.how = append(s.how, h)
	return nil
}

func (s *settled) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.how...)
}

func setup(t *testing.T) (*appender.Appender, *store.Store) {
	t.Parallel()
	ns := testenv.Namespace(t, "intake")
	buf := store.New(testenv.Redis(t, ns), ns, store.Options{
		QuietWindow: time.Hour, MaxWait: 2 * time.Hour, MaxMessages: 100, DedupeWindow: time.Hour, TTL: 24 * time.Hour, Lease: time.Minute,
	})
	in := appender.New(buf, appender.Options{Lanes: 4})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = in.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return in, buf
}

func envelope(t *testing.T, key, id, text string) []byte {
	e, err := ingest.ParseGeneric([]byte(`{"unique_id":"`+key+`","message":"`+text+`","message_id":"`+id+`"}`), time.Now(), nil)
	require.NoError(t, err)
	body, err := e.Encode()
	require.NoError(t, err)
	return body
}

func TestHandle_SettlesEveryDeliveryOnce(t *testing.T) {
	in, buf := setup(t)
	ctx := context.Background()
	poison, msg, dup, typing := &settled{}, &settled{}, &settled{}, &settled{}
	in.Handle(ctx, []byte(`{not json`), poison)
	in.Handle(ctx, envelope(t, "u1", "m1", "oi"), msg)
	in.Handle(ctx, envelope(t, "u1", "m1", "oi"), dup)
	in.Handle(ctx, []byte(`{"key":"u1","kind":"typing","message":{}}`), typing)
	require.Eventually(t, func() bool {
		return len(msg.get()) == 1 && len(dup.get()) == 1 && len(typing.get()) == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"dead-letter"}, poison.get(), "a poison message is dead-lettered, never requeued")
	require.Equal(t, []string{"ack"}, msg.get())
	require.Equal(t, []string{"ack"}, dup.get(), "a duplicate is acked: it is stored already")
	require.Equal(t, []string{"ack"}, typing.get())

	r, err := buf.FlushNow(ctx, "u1")
	require.NoError(t, err)
	require.True(t, r.Moved)
	claim, why, err := buf.Flush(ctx, "u1", "", "w")
	require.NoError(t, err)
	require.Empty(t, why)
	require.Len(t, claim.Messages, 1, "stored once")
}
