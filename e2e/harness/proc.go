package harness

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Proc is a running process: an api, a worker, or any command a test
// starts with StartProc.
type Proc struct {
	Name     string
	cmd      *exec.Cmd
	done     chan struct{} // closed once the process exited and its output was read
	stopping atomic.Bool   // the test asked it to exit (SIGTERM or SIGKILL)
	// subscribed: a worker's consumer is subscribed to the inbound queue,
	// as its log says (the queue's consumer count shows only the active
	// one of its single active consumer).
	subscribed *atomic.Bool
}

// StartProc starts cmd, handing each line of its output (stdout and
// stderr) to emit, and fails tb if it cannot start. It does not stop it
// when the test ends: the caller does.
func StartProc(tb testing.TB, name string, cmd *exec.Cmd, emit func(line string)) *Proc {
	tb.Helper()
	out := &lineWriter{emit: emit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	require.NoError(tb, cmd.Start(), "start %s", name)
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.flush()
		close(p.done)
	}()
	return p
}

// start runs binary with the deployment's environment. Its output goes to
// the test log line by line, prefixed with name; when the test ends it is
// stopped with SIGTERM (and must exit 0 within StopTimeout).
func (d *Deployment) start(name, binary string) *Proc {
	d.TB.Helper()
	return d.startWith(name, binary)
}

// startWith is start with the variables env (NAME=value) over the rest.
func (d *Deployment) startWith(name, binary string, env ...string) *Proc {
	d.TB.Helper()
	cmd := exec.Command(binary)
	cmd.Env = d.Environ()
	extra := d.Opts.WorkerEnv
	if binary == bins.api {
		extra = d.Opts.APIEnv
	}
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v) // os/exec keeps the last of a duplicated variable
	}
	cmd.Env = append(cmd.Env, env...)
	subscribed := &atomic.Bool{}
	log := d.ProcessLog(name)
	p := StartProc(d.TB, name, cmd, func(line string) {
		switch {
		case strings.Contains(line, `msg="consumer subscribed"`):
			subscribed.Store(true)
		case strings.Contains(line, `msg="consumer disconnected`), strings.Contains(line, `msg="consumer stopped"`):
			subscribed.Store(false)
		}
		log(line)
	})
	p.subscribed = subscribed
	d.TB.Cleanup(func() { d.shutdown(p) })
	return p
}

// Subscribed reports whether the process is a worker whose consumer is
// subscribed to the inbound queue (active or standing by), as its log says.
func (p *Proc) Subscribed() bool {
	return p.subscribed != nil && p.subscribed.Load() && !p.Exited()
}

// ProcessLog is where the output of the process name goes: the test log,
// prefixed with name, or with Opts.Bench the deployment's record of output
// (printed if the test fails; see OutputLines).
func (d *Deployment) ProcessLog(name string) func(line string) {
	return func(line string) {
		if !d.Opts.Bench {
			d.TB.Logf("%s| %s", name, line)
			return
		}
		d.mu.Lock()
		d.output = append(d.output, name+"| "+line)
		d.mu.Unlock()
	}
}

// shutdown stops p at the end of the test: a process that died on its own
// fails the test, and so does one that does not exit 0 after SIGTERM.
func (d *Deployment) shutdown(p *Proc) {
	if p.Exited() {
		if !p.stopping.Load() {
			d.TB.Errorf("%s exited during the test: %s", p.Name, p.cmd.ProcessState)
		}
		return
	}
	// Give back the test client's idle connections first, as a client
	// that is done would (TestSIGTERM_APIExitsPromptlyWithASilentConnection
	// covers the api's shutdown with a connection left open).
	d.Client.CloseIdleConnections()
	code, took, err := p.Terminate(StopTimeout)
	switch {
	case err != nil:
		d.TB.Error(err)
	case code != 0:
		d.TB.Errorf("%s exited with status %d after SIGTERM (took %s)", p.Name, code, took)
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State describes how the process exited; empty while it runs.
func (p *Proc) State() string {
	if !p.Exited() {
		return ""
	}
	return p.cmd.ProcessState.String()
}

// Terminate sends SIGTERM and waits up to within for the exit. It returns
// the exit status and how long the exit took; after within the process is
// killed and err says so.
func (p *Proc) Terminate(within time.Duration) (code int, took time.Duration, err error) {
	p.stopping.Store(true)
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, 0, fmt.Errorf("SIGTERM %s: %w", p.Name, err)
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), time.Since(start), nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1, time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.Name, within)
	}
}

// Kill sends SIGKILL (a crash: no shutdown code runs) and waits for the exit.
func (p *Proc) Kill() {
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
