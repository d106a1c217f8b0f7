package sink

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/testenv"
)

func TestDeliver_RetryResendsOnlyToFailedSinks(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	hb := setupHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	var out testenv.LogBuffer
	sinks := []Sink{NewLog(&out), hb.newSink(t, HTTPOptions{})}
	b, body := sampleBatch(t)
	done := map[string]bool{}

	err := Deliver(context.Background(), sinks, b, body, done)
	require.Error(t, err)
	require.Contains(t, err.Error(), "sink http: http sink: POST ")
	require.Contains(t, err.Error(), "status 503")
	require.False(t, IsPermanent(err))
	d, ok := RetryAfterOf(err)
	require.True(t, ok)
	require.Equal(t, 2*time.Second, d)
	require.Equal(t, map[string]bool{"log": true}, done)
	require.Equal(t, 1, strings.Count(out.String(), "── batch"))

	require.NoError(t, Deliver(context.Background(), sinks, b, body, done))
	require.Equal(t, map[string]bool{"log": true, "http": true}, done)
	require.Equal(t, 1, strings.Count(out.String(), "── batch"), "log must not get the batch twice")
	require.Equal(t, int32(2), calls.Load())
	require.Len(t, hb.requests(), 2)

	// Everything done: nothing is sent again.
	require.NoError(t, Deliver(context.Background(), sinks, b, body, done))
	require.Equal(t, int32(2), calls.Load())
}

func TestDeliver_NilDoneDeliversToAll(t *testing.T) {
	t.Parallel()
	var out testenv.LogBuffer
	b, body := sampleBatch(t)
	require.NoError(t, Deliver(context.Background(), []Sink{NewLog(&out)}, b, body, nil))
	require.Contains(t, out.String(), "5511999990000:17")
}

func TestDeliver_PermanentOnlyIfEveryFailureIs(t *testing.T) {
	t.Parallel()
	hb := setupHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	})
	b, body := sampleBatch(t)

	// The only failure is permanent.
	err := Deliver(context.Background(), []Sink{NewLog(&testenv.LogBuffer{}), hb.newSink(t, HTTPOptions{})}, b, body, map[string]bool{})
	require.True(t, IsPermanent(err), "%v", err)

	// A retryable failure beside it: retry later.
	writeErr := errors.New("disk full")
	err = Deliver(context.Background(), []Sink{NewLog(failingWriter{writeErr}), hb.newSink(t, HTTPOptions{})}, b, body, map[string]bool{})
	require.False(t, IsPermanent(err), "%v", err)
	require.ErrorIs(t, err, writeErr)
	require.Contains(t, err.Error(), "sink log: ")
	require.Contains(t, err.Error(), "status 400")
}

func TestDeliver_RetryAfterIsTheLongest(t *testing.T) {
	t.Parallel()
	short := errors.New("short")
	sinks := []Sink{
		funcSink{"a", func() error { return withRetryAfter(short, 2*time.Second) }},
		funcSink{"b", func() error { return Permanent(errors.New("gone")) }},
		funcSink{"c", func() error { return withRetryAfter(errors.New("long"), 9*time.Second) }},
		funcSink{"d", func() error { return nil }},
	}
	b, body := sampleBatch(t)
	done := map[string]bool{}
	err := Deliver(context.Background(), sinks, b, body, done)
	d, ok := RetryAfterOf(err)
	require.True(t, ok)
	require.Equal(t, 9*time.Second, d)
	require.False(t, IsPermanent(err))
	require.ErrorIs(t, err, short)
	require.Equal(t, map[string]bool{"d": true}, done)
	require.Equal(t, "sink a: short\nsink b: gone\nsink c: long", err.Error())
}

// funcSink is a sink whose outcome a test chooses; it exercises Deliver's
// aggregation where no real sink can produce the combination.
type funcSink struct {
	name string
	fn   func() error
}

func (s funcSink) Name() string { return s.name }

func (s funcSink) Deliver(context.Context, batch.Batch, []byte) error { return s.fn() }
