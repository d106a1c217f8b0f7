package poller

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/buffer"
	"github.com/lullhq/lull/internal/testenv"
)

// startRedis runs a redis-server of the test's own on a free port in
// t.TempDir(), without persistence, and connects a client to it. freeze
// stops the server (SIGSTOP): its connections stay open and nothing
// answers, as when a Redis hangs or the network path to it dies.
func startRedis(t *testing.T) (client rueidis.Client, freeze func()) {
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
	client, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT); client.Close() })
	return client, func() { require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP)) }
}

// A Redis whose connection is dead makes a scan (and a lease recovery) fail
// within the Redis timeout: the client would otherwise retry the script
// load it sends first forever, and the poller would hang without a word.
func TestScan_DeadRedisConnectionFailsWithinTheTimeout(t *testing.T) {
	t.Parallel()
	client, freeze := startRedis(t)
	ns := testenv.Namespace(t, "poller")
	buf := buffer.New(client, ns, buffer.Options{
		QuietWindow: time.Millisecond, MaxWait: time.Minute, MaxMessages: 100,
		DedupeWindow: time.Hour, TTL: time.Hour, Lease: time.Minute,
	})
	const timeout = 300 * time.Millisecond
	p := New(buf, func(context.Context, buffer.Claim) bool { return false }, Options{Owner: "w1", RedisTimeout: timeout})
	ctx := context.Background()
	_, _, err := p.scan(ctx)
	require.NoError(t, err, "a live Redis scans fine")

	freeze()
	for _, op := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"scan", func(ctx context.Context) error { _, _, err := p.scan(ctx); return err }},
		{"recover", p.recover},
	} {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- op.run(ctx) }()
		select {
		case err := <-done:
			took := time.Since(start)
			require.ErrorIs(t, err, context.DeadlineExceeded, op.name)
			require.Less(t, took, timeout+time.Second, "%s returns at its timeout", op.name)
			t.Logf("%s failed after %v: %v", op.name, took.Round(time.Millisecond), err)
		case <-time.After(timeout + 3*time.Second):
			t.Fatalf("%s still hangs %v after Redis froze", op.name, time.Since(start).Round(time.Millisecond))
		}
	}
}
