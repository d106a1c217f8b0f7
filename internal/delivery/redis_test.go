package delivery_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
)

// ownRedis is a redis-server of the test's own, to break as the test likes
// (refuse writes, freeze) without touching the Redis other tests share.
type ownRedis struct {
	client rueidis.Client
	proc   *os.Process
}

// startRedis runs redis-server on a free port in t.TempDir(), without
// persistence, and connects a client to it; both end with the test.
func startRedis(t *testing.T) *ownRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH; this test runs a Redis of its own")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server on %s exited: %s", addr, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	require.NoError(t, err)
	r := &ownRedis{client: client, proc: cmd.Process}
	t.Cleanup(func() { r.resume(); client.Close() })
	return r
}

// refuseWrites makes Redis answer OOM to every write, as a full Redis does.
func (r *ownRedis) refuseWrites(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, r.client.Do(ctx, r.client.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").Build()).Error())
	err := r.client.Do(ctx, r.client.B().Set().Key("probe").Value("x").Build()).Error()
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "OOM"), "writes refused with OOM, got %v", err)
}

// acceptWrites lifts refuseWrites.
func (r *ownRedis) acceptWrites(t *testing.T) {
	t.Helper()
	require.NoError(t, r.client.Do(context.Background(),
		r.client.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build()).Error())
}

// freeze stops the server (SIGSTOP): connections stay open and nothing
// answers, as with a hung Redis or a dead network path.
func (r *ownRedis) freeze(t *testing.T) {
	t.Helper()
	require.NoError(t, r.proc.Signal(syscall.SIGSTOP))
}

func (r *ownRedis) resume() { _ = r.proc.Signal(syscall.SIGCONT) }

// logs records what a component logs, for tests that check what it said.
type logs struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

// count is how many records at level or above hold substr in their message.
func (l *logs) count(level slog.Level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level >= level && strings.Contains(r.Message, substr) {
			n++
		}
	}
	return n
}

// messages lists the records at level or above, for failure output.
func (l *logs) messages(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level >= level {
			out = append(out, r.Level.String()+" "+r.Message)
		}
	}
	return out
}
