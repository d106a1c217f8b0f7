//go:build faults

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startVolatileRedis starts a redis-server of the test's own (see
// redisServer) persisting nothing (--save "", --appendonly no) and
// refusing writes once full (noeviction).
func startVolatileRedis(t *testing.T) *redisServer {
	t.Helper()
	return newRedisServer(t, "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction")
}

// Redis out of memory: mid-stream, with batches in flight, the Redis of the
// test's own gets a maxmemory far under what it holds (noeviction), so
// every write is refused with OOM — appends, claims, commits, lease
// renewals — while reads still work. Nothing may be acked before it is
// stored, nothing lost; once CONFIG SET maxmemory 0 frees it, lull carries
// on by itself, and its logs say why it stalled.
func testFaultRedisOOM(t *testing.T) {
	srv := startVolatileRedis(t) // before setup: stopped after the processes
	opts := faultOptions()
	opts.Env["REDIS_URL"] = srv.url()
	f := newFaultRun(t, faultRedisOOM, opts)
	f.redis = srv.client()
	f.midStream(networkLoad())
	inflight := f.waitInflight(3)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	used, err := f.redis.Do(ctx, f.redis.B().Info().Section("memory").Build()).ToString()
	require.NoError(t, err)
	// A limit no delete can get back under: full until it is lifted.
	require.NoError(t, f.redis.Do(ctx, f.redis.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").Build()).Error())
	full := time.Now()
	err = f.redis.Do(ctx, f.redis.B().Set().Key(f.b.NS+":oom-probe").Value("x").Build()).Error()
	require.Error(t, err, "a write went through with maxmemory reached")
	require.Contains(t, err.Error(), "OOM", "the refused write")
	t.Logf("redis full (%s) with %d batches in flight, %d messages accepted", memoryLine(used), inflight, len(f.b.SentSoFar()))

	time.Sleep(3 * time.Second)
	ready, _, qerr := f.b.QueueState()
	require.NoError(t, f.redis.Do(ctx, f.redis.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build()).Error())
	t.Logf("memory freed after %s; %d messages were waiting in the queue (%v)", time.Since(full).Round(time.Millisecond), ready, qerr)
	f.finish()

	// Redis refusing writes is no reason for the broker link to drop.
	for _, line := range f.b.OutputLines("worker", "consumer disconnected") {
		t.Log(line)
	}
	oom := f.b.OutputLines("worker", "OOM")
	summary, _ := f.b.ProblemSummary("worker")
	t.Logf("the worker logged %d lines naming the OOM; its warnings and errors: %s", len(oom), summary)
	if assert.NotEmpty(t, oom, "no worker log line says Redis refused writes (OOM)") {
		t.Logf("first: %s", oom[0])
	}
}

// memoryLine picks used_memory_human out of INFO memory.
func memoryLine(info string) string {
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "used_memory_human:") {
			return strings.TrimSpace(line)
		}
	}
	return "used_memory unknown"
}
