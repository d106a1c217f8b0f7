package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
)

// sampleBatch is a three-message burst built the way the worker builds it,
// with its JSON body.
func sampleBatch(t *testing.T) (batch.Batch, []byte) {
	t.Helper()
	raw := []json.RawMessage{
		json.RawMessage(`{"id":"m1","text":"oi","type":"text","received_at":"2026-11-25T20:00:00.101Z","source":"generic"}`),
		json.RawMessage(`{"id":"m2","text":"tudo bem?","type":"text","received_at":"2026-11-25T20:00:01.876Z","source":"generic"}`),
		json.RawMessage(`{"id":"m3","text":"foto do pedido","type":"image","received_at":"2026-11-25T20:00:04.002Z","source":"generic","metadata":{"mime":"image/jpeg"}}`),
	}
	flushed := time.Date(2026, 11, 25, 20, 0, 12, 345e6, time.UTC).UnixMilli()
	b, err := batch.New("5511999990000", 17, batch.ReasonQuiet, flushed, 1, raw)
	require.NoError(t, err)
	body, err := json.Marshal(b)
	require.NoError(t, err)
	return b, body
}

func TestFromNames_BuildsNamedSinksInOrder(t *testing.T) {
	t.Parallel()
	sinks, err := FromNames([]string{" LOG ", "http"}, Options{
		Log:  io.Discard,
		HTTP: HTTPOptions{URL: "http://127.0.0.1:9/hook", Timeout: testHTTPTimeout, MaxConns: testMaxConns},
	})
	require.NoError(t, err)
	require.Len(t, sinks, 2)
	require.Equal(t, "log", sinks[0].Name())
	require.Equal(t, "http", sinks[1].Name())
	require.IsType(t, &Log{}, sinks[0])
	require.IsType(t, &HTTP{}, sinks[1])
}

func TestFromNames_BuildsBrokerSinks(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: the sinks start anyway and connect in
	// the background.
	sinks, err := FromNames([]string{"amqp", "celery"}, Options{
		Broker: BrokerOptions{URL: "amqp://guest:guest@127.0.0.1:1/", Namespace: "test-sink-fromnames", Timeout: testPublishTimeout, Logger: testLogger(t)},
		AMQP:   AMQPOptions{Exchange: "test-sink-fromnames.batches", Queue: NoQueue},
		Celery: CeleryOptions{Queue: "test-sink-fromnames.celery", Task: "t"},
	})
	require.NoError(t, err)
	require.Len(t, sinks, 2)
	require.IsType(t, &AMQP{}, sinks[0])
	require.IsType(t, &Celery{}, sinks[1])
	require.Equal(t, "amqp", sinks[0].Name())
	require.Equal(t, "celery", sinks[1].Name())
	require.Equal(t, "t", sinks[1].(*Celery).task)
	require.NoError(t, Close(context.Background(), sinks))
}

func TestFromNames_LogDefaultsToStdout(t *testing.T) {
	t.Parallel()
	sinks, err := FromNames([]string{"log"}, Options{})
	require.NoError(t, err)
	require.NotNil(t, sinks[0].(*Log).w)
}

func TestFromNames_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		names    []string
		opts     Options
		contains string
	}{
		{name: "unknown", names: []string{"log", "kafka"}, contains: `sink "kafka": unknown`},
		{name: "amqp without url", names: []string{"amqp"}, contains: `sink "amqp": amqp sink: URL is required (AMQP_URL)`},
		{name: "amqp without exchange", names: []string{"amqp"}, opts: Options{Broker: BrokerOptions{URL: "amqp://127.0.0.1:1/", Namespace: "x", Timeout: testPublishTimeout}},
			contains: "Exchange is required (BATCH_EXCHANGE)"},
		{name: "amqp without timeout", names: []string{"amqp"}, opts: Options{Broker: BrokerOptions{URL: "amqp://127.0.0.1:1/", Namespace: "x"}, AMQP: AMQPOptions{Exchange: "x"}},
			contains: "must be positive (PUBLISH_TIMEOUT)"},
		{name: "amqp bad url", names: []string{"amqp"}, opts: Options{Broker: BrokerOptions{URL: "http://x", Namespace: "x", Timeout: testPublishTimeout}, AMQP: AMQPOptions{Exchange: "x"}},
			contains: "parse AMQP URL"},
		{name: "celery without namespace", names: []string{"log", "celery"}, opts: Options{Broker: BrokerOptions{URL: "amqp://127.0.0.1:1/"}},
			contains: `sink "celery": celery sink: Namespace is required`},
		{name: "broker sink built before a bad one", names: []string{"celery", "http"},
			opts:     Options{Broker: BrokerOptions{URL: "amqp://127.0.0.1:1/", Namespace: "x", Timeout: testPublishTimeout}, Celery: CeleryOptions{Queue: "q", Task: "t"}},
			contains: `sink "http": http sink: URL is required`},
		{name: "celery without task", names: []string{"celery"}, opts: Options{Broker: BrokerOptions{URL: "amqp://127.0.0.1:1/", Namespace: "x", Timeout: testPublishTimeout}, Celery: CeleryOptions{Queue: "q"}},
			contains: "Task is required (CELERY_TASK)"},
		{name: "celery without queue", names: []string{"celery"}, opts: Options{Broker: BrokerOptions{URL: "amqp://127.0.0.1:1/", Namespace: "x", Timeout: testPublishTimeout}, Celery: CeleryOptions{Task: "t"}},
			contains: "Queue is required (CELERY_QUEUE)"},
		{name: "http without url", names: []string{"http"}, contains: "URL is required"},
		{name: "http bad url", names: []string{"http"}, opts: Options{HTTP: HTTPOptions{URL: "ftp://x/y", Timeout: testHTTPTimeout}}, contains: "absolute http"},
		{name: "empty name", names: []string{"log", " "}, contains: `sink " ": unknown`},
		{name: "every problem", names: []string{"kafka", "log", "LOG"}, contains: `sink "kafka": unknown (known: log, http, amqp, celery)` + "\n" + `sink "log": listed twice`},
		{name: "duplicate", names: []string{"log", "Log"}, contains: `sink "log": listed twice`},
		{name: "empty", names: []string{}, contains: "no sinks"},
		{name: "nil", names: nil, contains: "no sinks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sinks, err := FromNames(tt.names, tt.opts)
			require.Error(t, err)
			require.Nil(t, sinks)
			require.Contains(t, err.Error(), tt.contains)
		})
	}
}

func TestPermanent_SurvivesWrapping(t *testing.T) {
	t.Parallel()
	base := errors.New("bad request")
	require.NoError(t, Permanent(nil))
	require.False(t, IsPermanent(nil))
	require.False(t, IsPermanent(base))

	p := Permanent(base)
	require.Equal(t, "bad request", p.Error())
	require.ErrorIs(t, p, base)
	require.True(t, IsPermanent(p))
	require.True(t, IsPermanent(fmt.Errorf("deliver: %w", p)))
}

func TestRetryAfterOf(t *testing.T) {
	t.Parallel()
	_, ok := RetryAfterOf(nil)
	require.False(t, ok)
	_, ok = RetryAfterOf(errors.New("x"))
	require.False(t, ok)

	base := errors.New("busy")
	err := fmt.Errorf("outer: %w", withRetryAfter(base, 3*time.Second))
	d, ok := RetryAfterOf(err)
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d)
	require.ErrorIs(t, err, base)
	require.False(t, IsPermanent(err))
}
