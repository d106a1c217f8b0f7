package health_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/health"
	"github.com/lullhq/lull/internal/testenv"
)

func get(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	return rec.Code, body
}

func TestReadyz_ReadyWritesTheProbeKey(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "health")
	redis := testenv.Redis(t, ns)
	var consumer atomic.Bool
	consumer.Store(true)
	h := health.New(health.Options{Redis: redis, Namespace: ns, ConsumerReady: consumer.Load}).Handler()

	code, body := get(t, h, "/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, map[string]any{"ready": true, "redis": true, "consumer": true}, body)
	ttl, err := redis.Do(context.Background(), redis.B().Pttl().Key(ns+":health").Build()).AsInt64()
	require.NoError(t, err)
	require.Positive(t, ttl, "the probe key expires by itself")
	require.LessOrEqual(t, ttl, int64(10_000))

	consumer.Store(false)
	code, body = get(t, h, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, map[string]any{"ready": false, "redis": true, "consumer": false, "reason": "consumer: not connected"}, body)

	code, body = get(t, h, "/healthz")
	require.Equal(t, http.StatusOK, code, "alive while not ready")
	require.Equal(t, "ok", body["status"])
}

func TestReadyz_StoppingIsNotReadyButAlive(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "health")
	s := health.New(health.Options{Redis: testenv.Redis(t, ns), Namespace: ns})
	s.SetStopping()
	code, body := get(t, s.Handler(), "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "shutting down", body["reason"])
	code, _ = get(t, s.Handler(), "/healthz")
	require.Equal(t, http.StatusOK, code)
}

// A Redis at maxmemory with noeviction still answers PING but refuses
// every write, so the worker can append nothing: not ready, and why.
func TestReadyz_RedisOutOfMemory(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedisServer(t).Client
	ctx := context.Background()
	ns := testenv.Namespace(t, "health")
	h := health.New(health.Options{Redis: redis, Namespace: ns}).Handler()
	code, _ := get(t, h, "/readyz")
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, redis.Do(ctx, redis.B().ConfigSet().ParameterValue().ParameterValue("maxmemory-policy", "noeviction").ParameterValue("maxmemory", "1").Build()).Error())
	require.NoError(t, redis.Do(ctx, redis.B().Ping().Build()).Error(), "PING still answers")
	code, body := get(t, h, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, map[string]any{"ready": false, "redis": false, "consumer": true,
		"reason": "redis: out of memory (maxmemory reached, writes refused)"}, body)

	require.NoError(t, redis.Do(ctx, redis.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build()).Error())
	code, _ = get(t, h, "/readyz")
	require.Equal(t, http.StatusOK, code)
}

func TestReadyz_RedisDown(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	ns := testenv.Namespace(t, "health")
	h := health.New(health.Options{Redis: srv.Client, Namespace: ns, CheckTimeout: 300 * time.Millisecond}).Handler()
	srv.Kill()
	start := time.Now()
	code, body := get(t, h, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "redis: not reachable", body["reason"])
	require.Less(t, time.Since(start), 2*time.Second, "the check is bounded")
}

func closed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not closed", what)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestServer_StartServesStopShutsDown(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "health")
	s := health.New(health.Options{Addr: "127.0.0.1:0", Redis: testenv.Redis(t, ns), Namespace: ns})
	require.Empty(t, s.Addr(), "not bound before Start")
	s.Stop() // never started: returns at once
	require.NoError(t, s.Start(context.Background()))
	require.NoError(t, s.Start(context.Background()), "a second Start does nothing")
	closed(t, s.Started(), "started")

	url := "http://" + s.Addr()
	require.Equal(t, http.StatusOK, getStatus(t, url+"/healthz"))
	require.Equal(t, http.StatusOK, getStatus(t, url+"/readyz"))
	s.SetStopping()
	require.Equal(t, http.StatusServiceUnavailable, getStatus(t, url+"/readyz"))
	require.Equal(t, http.StatusOK, getStatus(t, url+"/healthz"), "alive while stopping")

	s.Stop()
	closed(t, s.Stopped(), "stopped")
	require.NoError(t, s.Err())
	_, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	require.Error(t, err, "the port is closed")
}

func TestServer_ParentContextEndsIt(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "health")
	s := health.New(health.Options{Addr: "127.0.0.1:0", Redis: testenv.Redis(t, ns), Namespace: ns})
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	cancel()
	closed(t, s.Stopped(), "stopped with its parent")
	require.NoError(t, s.Err())
}

func TestServer_StartReturnsTheBindError(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t, "health")
	redis := testenv.Redis(t, ns)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	for _, addr := range []string{taken.Addr().String(), "127.0.0.1:bad", ""} {
		s := health.New(health.Options{Addr: addr, Redis: redis, Namespace: ns})
		require.Error(t, s.Start(context.Background()), addr)
		closed(t, s.Stopped(), "stopped after a failed Start")
		s.Stop() // returns at once
	}
	s := health.New(health.Options{Addr: taken.Addr().String(), Redis: redis, Namespace: ns})
	require.Error(t, s.Start(context.Background()))
	require.NoError(t, taken.Close())
	require.NoError(t, s.Start(context.Background()), "it can start once the port is free")
	t.Cleanup(s.Stop)
	require.Equal(t, http.StatusOK, getStatus(t, "http://"+s.Addr()+"/healthz"))
}
