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
)

// redisServer is a redis-server of the test's own, persisting every write
// to an append-only file (fsync always) in a directory of the test's own,
// so a kill -9 loses nothing it acknowledged.
type redisServer struct {
	t    *testing.T
	addr string // 127.0.0.1:port
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	n    int // starts so far, to name the log lines
}

// startRedisServer starts a fresh AOF Redis on a free port; it is killed
// when the test ends.
func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not on PATH: %v", err)
	}
	r := &redisServer{t: t, addr: freeAddr(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(func() {
		if r.cmd != nil && !r.exited() {
			r.kill()
		}
	})
	return r
}

func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

// start runs redis-server on r's port and directory (replaying the AOF
// there) and waits until it answers PING.
func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.n++
	name := fmt.Sprintf("redis%d", r.n)
	out := &lineWriter{emit: func(line string) { r.t.Logf("%s| %s", name, line) }}
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no")
	r.cmd.Stdout, r.cmd.Stderr = out, out
	require.NoError(r.t, r.cmd.Start(), "start redis-server")
	done := make(chan struct{})
	r.done = done
	cmd := r.cmd
	go func() {
		_ = cmd.Wait()
		out.flush()
		close(done)
	}()
	waitUntil(r.t, 20*time.Second, "redis-server on "+r.addr+" answers PING", func() bool {
		return !r.exited() && r.ping()
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

func (r *redisServer) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the exit.
func (r *redisServer) kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

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
	f.load = f.b.startLoad(loadSpec{})
	f.b.waitAccepted(f.load, 0.35)
	inflight := f.waitInflight(3)
	srv.kill()
	t.Logf("redis killed with %d batches in flight, %d messages accepted", inflight, len(f.b.sentSoFar()))
	time.Sleep(1500 * time.Millisecond) // stays dead a while: appends and commits fail
	srv.start()
	t.Logf("redis restarted from its AOF")
	f.finish()
}
