//go:build faults

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/testenv"
)

// redisServer is a redis-server of the test's own, on a port and in a
// directory of the test's own, that a test may kill -9 and start again.
type redisServer struct {
	t    *testing.T
	addr string // 127.0.0.1:port
	dir  string
	args []string // what it persists, and how
	proc *harness.Proc
	n    int // starts so far, to name the log lines
}

// startRedisServer starts a fresh Redis persisting every write to an
// append-only file (fsync always), so a kill -9 loses nothing it
// acknowledged, on a free port; it is killed when the test ends.
func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	return newRedisServer(t, "--appendonly", "yes", "--appendfsync", "always", "--save", "")
}

// newRedisServer starts redis-server with args and waits until it answers
// PING; it is killed when the test ends.
func newRedisServer(t *testing.T, args ...string) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not on PATH: %v", err)
	}
	r := &redisServer{t: t, addr: testenv.FreeAddr(t), dir: t.TempDir(), args: args}
	t.Cleanup(func() {
		if r.proc != nil && !r.proc.Exited() {
			r.kill()
		}
	})
	r.start()
	return r
}

func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

// start runs redis-server on r's port and directory (replaying the AOF
// there, if it keeps one) and waits until it answers PING.
func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.n++
	name := fmt.Sprintf("redis%d", r.n)
	cmd := exec.Command("redis-server", append([]string{"--bind", "127.0.0.1", "--port", port, "--dir", r.dir, "--daemonize", "no"}, r.args...)...)
	r.proc = harness.StartProc(r.t, "redis-server", cmd, func(line string) { r.t.Logf("%s| %s", name, line) })
	harness.WaitUntil(r.t, 20*time.Second, "redis-server on "+r.addr+" answers PING", func() bool {
		return !r.proc.Exited() && r.ping()
	})
}

// ping sends PING over a plain connection: +PONG once the AOF is loaded.
func (r *redisServer) ping() bool {
	conn, err := net.DialTimeout("tcp", r.addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "+PONG"
}

// kill sends SIGKILL and waits for the exit.
func (r *redisServer) kill() { r.proc.Kill() }

// client connects the test to r (rueidis reconnects by itself after a
// restart); it is closed when the test ends.
func (r *redisServer) client() rueidis.Client {
	r.t.Helper()
	opt, err := rueidis.ParseURL(r.url())
	require.NoError(r.t, err)
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	require.NoError(r.t, err, "redis %s", r.url())
	r.t.Cleanup(c.Close)
	return c
}

func testFaultRedisKill(t *testing.T) {
	// Started before setup, so it is stopped after the api and workers.
	srv := startRedisServer(t)
	opts := faultOptions()
	opts.Env["REDIS_URL"] = srv.url()
	f := newFaultRun(t, faultRedisKill, opts)
	f.redis = srv.client()
	f.midStream(harness.LoadSpec{})
	inflight := f.waitInflight(3)
	srv.kill()
	t.Logf("redis killed with %d batches in flight, %d messages accepted", inflight, len(f.b.SentSoFar()))
	time.Sleep(1500 * time.Millisecond) // stays dead a while: appends and commits fail
	srv.start()
	t.Logf("redis restarted from its AOF")
	f.finish()
}
