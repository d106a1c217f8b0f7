package sink

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// connCounter is a receiver that counts the connections it accepts and the
// most requests it served at once.
type connCounter struct {
	srv               *httptest.Server
	conns             atomic.Int64
	inFlight, maxSeen atomic.Int64
}

func newConnCounter(t *testing.T, delay time.Duration) *connCounter {
	t.Helper()
	cc := &connCounter{}
	cc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cc.inFlight.Add(1)
		defer cc.inFlight.Add(-1)
		for {
			m := cc.maxSeen.Load()
			if n <= m || cc.maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(delay)
		w.WriteHeader(http.StatusOK)
	}))
	cc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cc.conns.Add(1)
		}
	}
	cc.srv.Start()
	t.Cleanup(cc.srv.Close)
	return cc
}

// deliverAll delivers n batches through h from workers goroutines at once,
// as the delivery pool does.
func deliverAll(t *testing.T, h *HTTP, n, workers int) {
	t.Helper()
	b, body := sampleBatch(t)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := h.Deliver(context.Background(), b, body); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestHTTP_ReusesConnectionsUpToMaxConns(t *testing.T) {
	t.Parallel()
	const batches, concurrency = 400, 16
	cc := newConnCounter(t, time.Millisecond)
	h, err := NewHTTP(HTTPOptions{URL: cc.srv.URL + "/hook", Timeout: testHTTPTimeout, MaxConns: concurrency})
	require.NoError(t, err)
	deliverAll(t, h, batches, concurrency)
	require.LessOrEqual(t, cc.conns.Load(), int64(concurrency), "connections opened for %d batches", batches)
	require.LessOrEqual(t, cc.maxSeen.Load(), int64(concurrency))

	// Close drops the kept-alive connections, and Deliver fails after it.
	require.NoError(t, h.Close(context.Background()))
	b, body := sampleBatch(t)
	err = h.Deliver(context.Background(), b, body)
	require.ErrorContains(t, err, "sink closed")
	require.False(t, IsPermanent(err))
}

// The transport caps the connections too: more deliveries at once than
// MaxConns wait for a connection instead of opening more.
func TestHTTP_CapsConnectionsAtMaxConns(t *testing.T) {
	t.Parallel()
	const batches, maxConns, callers = 200, 4, 32
	cc := newConnCounter(t, 2*time.Millisecond)
	h, err := NewHTTP(HTTPOptions{URL: cc.srv.URL + "/hook", Timeout: testHTTPTimeout, MaxConns: maxConns})
	require.NoError(t, err)
	deliverAll(t, h, batches, callers)
	require.LessOrEqual(t, cc.conns.Load(), int64(maxConns))
	require.LessOrEqual(t, cc.maxSeen.Load(), int64(maxConns))
}

// What the sink did before it had its own transport: Go's default keeps 2
// idle connections per host, so concurrent deliveries keep dialing.
func TestHTTP_DefaultTransportDialsPerBatch(t *testing.T) {
	t.Parallel()
	const batches, concurrency = 400, 16
	cc := newConnCounter(t, time.Millisecond)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	h, err := NewHTTP(HTTPOptions{URL: cc.srv.URL + "/hook", Timeout: testHTTPTimeout, MaxConns: concurrency, Client: &http.Client{Transport: tr}})
	require.NoError(t, err)
	deliverAll(t, h, batches, concurrency)
	t.Logf("default transport: %d connections for %d batches", cc.conns.Load(), batches)
	require.Greater(t, cc.conns.Load(), int64(concurrency))
}

func TestNewHTTP_OwnTransport(t *testing.T) {
	t.Parallel()
	h, err := NewHTTP(HTTPOptions{URL: "https://example.com/hook", Timeout: testHTTPTimeout, MaxConns: 64})
	require.NoError(t, err)
	tr, ok := h.client.Transport.(*http.Transport)
	require.True(t, ok)
	require.Same(t, h.own, tr)
	require.Equal(t, 64, tr.MaxIdleConnsPerHost)
	require.Equal(t, 64, tr.MaxConnsPerHost)
	require.Positive(t, tr.IdleConnTimeout)
	require.True(t, tr.ForceAttemptHTTP2)
	require.False(t, tr.DisableKeepAlives)
	require.NotSame(t, http.DefaultTransport, tr)

	// A caller's transport is kept and not owned.
	mine := &http.Transport{}
	h, err = NewHTTP(HTTPOptions{URL: "https://example.com/hook", Timeout: testHTTPTimeout, MaxConns: 64, Client: &http.Client{Transport: mine}})
	require.NoError(t, err)
	require.Same(t, mine, h.client.Transport)
	require.Nil(t, h.own)
}
