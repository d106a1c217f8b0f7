package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stretchr/testify/require"
)

// proc is a running api or worker process.
type proc struct {
	name     string
	cmd      *exec.Cmd
	done     chan struct{} // closed once the process exited and its output was read
	stopping atomic.Bool   // the test asked it to exit (SIGTERM or SIGKILL)
}

// start runs binary with the bundle's environment. Its output goes to the
// test log line by line, prefixed with name; when the test ends it is
// stopped with SIGTERM (and must exit 0 within stopTimeout).
func (b *bundle) start(name, binary string) *proc {
	b.tb.Helper()
	out := &lineWriter{emit: func(line string) { b.logProcess(name, line) }}
	cmd := exec.Command(binary)
	cmd.Env = b.environ()
	extra := b.opts.WorkerEnv
	if binary == bins.api {
		extra = b.opts.APIEnv
	}
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v) // os/exec keeps the last of a duplicated variable
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	require.NoError(b.tb, cmd.Start(), "start %s", name)
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.flush()
		close(p.done)
	}()
	b.tb.Cleanup(func() { b.shutdown(p) })
	return p
}

func (b *bundle) logProcess(name, line string) {
	if !b.opts.Bench {
		b.tb.Logf("%s| %s", name, line)
		return
	}
	b.mu.Lock()
	b.output = append(b.output, name+"| "+line)
	b.mu.Unlock()
}

// shutdown stops p at the end of the test: a process that died on its own
// fails the test, and so does one that does not exit 0 after SIGTERM.
func (b *bundle) shutdown(p *proc) {
	if p.exited() {
		if !p.stopping.Load() {
			b.tb.Errorf("%s exited during the test: %s", p.name, p.cmd.ProcessState)
		}
		return
	}
	// Give back the test client's idle connections first, as a client
	// that is done would (TestSIGTERM_APIExitsPromptlyWithASilentConnection
	// covers the api's shutdown with a connection left open).
	b.client.CloseIdleConnections()
	code, took, err := p.terminate(stopTimeout)
	switch {
	case err != nil:
		b.tb.Error(err)
	case code != 0:
		b.tb.Errorf("%s exited with status %d after SIGTERM (took %s)", p.name, code, took)
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// terminate sends SIGTERM and waits up to within for the exit. It returns
// the exit status and how long the exit took; after within the process is
// killed and err says so.
func (p *proc) terminate(within time.Duration) (code int, took time.Duration, err error) {
	p.stopping.Store(true)
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, 0, fmt.Errorf("SIGTERM %s: %w", p.name, err)
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), time.Since(start), nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1, time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, within)
	}
}

// kill sends SIGKILL (a crash: no shutdown code runs) and waits for the exit.
func (p *proc) kill() {
	p.stopping.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// lineWriter hands each complete line written to it to emit.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// flush emits what is left of an unterminated last line.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}
