package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
)

// RedisServer is a redis-server of the test's own, to break as the test
// likes (refuse writes, freeze) without touching the Redis other tests share.
type RedisServer struct {
	Client rueidis.Client
	Addr   string // host:port
	proc   *os.Process
	exited <-chan struct{}
}

// StartRedisServer runs redis-server on a free port in t.TempDir(), without
// persistence, and connects a client to it; both end with the test. It
// skips the test when redis-server is not on PATH.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH; this test runs a Redis of its own")
	}
	dir := t.TempDir()
	addr := FreeAddr(t)
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
	r := &RedisServer{Client: client, Addr: addr, proc: cmd.Process, exited: exited}
	t.Cleanup(func() { r.Resume(); client.Close() })
	return r
}

// RefuseWrites makes Redis answer OOM to every write, as a full Redis does.
func (r *RedisServer) RefuseWrites(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, r.Client.Do(ctx, r.Client.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").Build()).Error())
	err := r.Client.Do(ctx, r.Client.B().Set().Key("probe").Value("x").Build()).Error()
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "OOM"), "writes refused with OOM, got %v", err)
}

// AcceptWrites lifts RefuseWrites.
func (r *RedisServer) AcceptWrites(t testing.TB) {
	t.Helper()
	require.NoError(t, r.Client.Do(context.Background(),
		r.Client.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build()).Error())
}

// Freeze stops the server (SIGSTOP): connections stay open and nothing
// answers, as with a hung Redis or a dead network path.
func (r *RedisServer) Freeze(t testing.TB) {
	t.Helper()
	require.NoError(t, r.proc.Signal(syscall.SIGSTOP))
}

// Resume lifts Freeze.
func (r *RedisServer) Resume() { _ = r.proc.Signal(syscall.SIGCONT) }

// Kill kills the server and waits until it is gone, as a crashed Redis:
// connections are closed and the port refuses new ones.
func (r *RedisServer) Kill() {
	_ = r.proc.Kill()
	<-r.exited
}
