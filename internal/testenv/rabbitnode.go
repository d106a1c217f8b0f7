//go:build unix

package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitNode is a RabbitMQ node of one test's own: its own node name, AMQP
// port, distribution port, data and log directories, Erlang cookie and no
// plugins. A test may stop it or raise its memory alarm without touching the
// broker every other test shares.
type RabbitNode struct {
	// Name is the Erlang node name, lulltest-<random>@localhost.
	Name string
	// URL is the AMQP URL of the node (guest:guest on 127.0.0.1).
	URL string
	// Dir holds the node's data, logs, config and server.out.
	Dir string
	// BootTime is how long the node took from start to accepting AMQP
	// connections.
	BootTime time.Duration

	server, ctl string
	env         []string // for rabbitmq-server and rabbitmqctl
	cmd         *exec.Cmd
	exited      chan struct{} // closed once rabbitmq-server exited
	stopOnce    sync.Once
	stopErr     error
}

// nodeWatchdog runs rabbitmq-server ($0) and kills the node's process group
// once its stdin, a pipe from the test process, reaches EOF: a test binary
// that panics on -timeout or is killed runs no cleanup, and would leave the
// node running. A background job's stdin is /dev/null unless redirected,
// hence fd 3.
const nodeWatchdog = `exec 3<&0
"$0" </dev/null &
server=$!
{ read -r _ <&3; kill -KILL 0; } &
wait "$server"`

// rabbitBootTimeout bounds a node's boot: about 8 s on an idle 2-core
// machine, more when tests run beside it.
const rabbitBootTimeout = 90 * time.Second

// RequireRabbitServer skips the test under -short (a node of its own takes
// seconds to boot) or when rabbitmq-server is not installed, and fails it
// instead of skipping when CI=true: there a missing broker is a broken
// machine, not a reason to pass.
func RequireRabbitServer(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a RabbitMQ node of its own (skipped with -short)")
	}
	if _, _, err := rabbitBinaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("a RabbitMQ node of the test's own is required under CI: %v", err)
		}
		t.Skipf("needs a RabbitMQ node of its own: %v", err)
	}
}

// rabbitBinaries finds rabbitmq-server and rabbitmqctl. Debian's
// /usr/sbin scripts switch to the rabbitmq user when run as root, which
// would lose the node's environment and home, so the scripts they wrap are
// preferred; elsewhere (a tarball install, Homebrew) the ones on PATH are
// the real ones.
func rabbitBinaries() (server, ctl string, err error) {
	const debian = "/usr/lib/rabbitmq/bin/"
	find := func(name string) (string, error) {
		if p := debian + name; isExecutable(p) {
			return p, nil
		}
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%s not found: %w", name, err)
		}
		return p, nil
	}
	if server, err = find("rabbitmq-server"); err != nil {
		return "", "", err
	}
	if ctl, err = find("rabbitmqctl"); err != nil {
		return "", "", err
	}
	return server, ctl, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// StartRabbitNode boots a RabbitMQ node of the test's own and waits until
// it accepts AMQP connections; it is stopped when the test ends. It calls
// RequireRabbitServer first. It returns the node's AMQP URL and the node.
func StartRabbitNode(t testing.TB) (string, *RabbitNode) {
	t.Helper()
	RequireRabbitServer(t)
	server, ctl, _ := rabbitBinaries()

	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(b)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	amqpPort, distPort := freePort(t), freePort(t)
	n := &RabbitNode{
		Name:   "lulltest-" + id + "@localhost",
		URL:    fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort),
		Dir:    dir,
		server: server,
		ctl:    ctl,
		exited: make(chan struct{}),
	}
	// The cookie in HOME lets rabbitmqctl (given the same HOME) talk to this
	// node and to no other; an empty env file keeps the system's
	// rabbitmq-env.conf (node name, Erlang flags) out.
	files := map[string]string{
		filepath.Join(home, ".erlang.cookie"):   "LULLTEST" + strings.ToUpper(id) + "\n",
		filepath.Join(dir, "enabled_plugins"):   "[].\n",
		filepath.Join(dir, "rabbitmq-env.conf"): "",
		// A full test disk must not raise a disk alarm the test did not
		// ask for; the memory watermark is the default, set explicitly so
		// ClearAlarm restores exactly it.
		filepath.Join(dir, "rabbitmq.conf"): "disk_free_limit.absolute = 1MB\nvm_memory_high_watermark.relative = 0.4\n",
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	for path, content := range files {
		mode := os.FileMode(0o600)
		if strings.HasSuffix(path, ".erlang.cookie") {
			mode = 0o400 // Erlang refuses a cookie others can read
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	n.env = append(cleanEnv(),
		"HOME="+home,
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
	)
	serverEnv := append(append([]string{}, n.env...),
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_SERVER_START_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_ADDRESS=127.0.0.1",
	)

	out, err := os.Create(filepath.Join(dir, "server.out"))
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command("/bin/sh", "-c", nodeWatchdog, server)
	n.cmd.Dir = dir
	n.cmd.Env = serverEnv
	n.cmd.Stdout, n.cmd.Stderr = out, out
	// The watchdog's stdin: the test process never writes to it, and when
	// that process ends, however it ends, the pipe closes.
	if _, err := n.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	// A group of its own, so the watchdog, or Stop, can kill the node with
	// every process it started.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := n.cmd.Start(); err != nil {
		_ = out.Close()
		t.Fatalf("start %s: %v", server, err)
	}
	go func() {
		_ = n.cmd.Wait()
		_ = out.Close()
		close(n.exited)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop rabbitmq node %s: %v", n.Name, err)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), rabbitBootTimeout)
	defer cancel()
	if err := n.awaitBoot(ctx); err != nil {
		t.Fatalf("rabbitmq node %s did not boot: %v\n%s", n.Name, err, n.serverOutput())
	}
	n.BootTime = time.Since(start)
	t.Logf("rabbitmq node %s booted in %s on %s", n.Name, n.BootTime.Round(10*time.Millisecond), n.URL)
	return n.URL, n
}

// awaitBoot waits until the node accepts AMQP connections (the listener
// opens near the end of the boot), then confirms with `rabbitmqctl
// await_startup`. Polling the port first is what makes this quick: a bare
// await_startup fails at once while the node has not registered with epmd
// yet, and `rabbitmqctl wait` polls slowly.
func (n *RabbitNode) awaitBoot(ctx context.Context) error {
	for {
		conn, err := amqp.Dial(n.URL)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case <-n.exited:
			return errors.New("rabbitmq-server exited during boot")
		case <-ctx.Done():
			return fmt.Errorf("dial %s: %w (%w)", n.URL, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, err := n.Ctl(ctx, "await_startup", "--timeout", strconv.Itoa(int(rabbitBootTimeout.Seconds())))
	return err
}

// Ctl runs rabbitmqctl -n <node> args... and returns its combined output.
// Each call takes about a second: the CLI boots an Erlang VM of its own.
func (n *RabbitNode) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.ctl, append([]string{"-n", n.Name}, args...)...)
	cmd.Env = n.env
	cmd.Dir = n.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Alarm raises the node's memory alarm: it sends connection.blocked to
// every publishing connection and stops reading from them.
func (n *RabbitNode) Alarm(ctx context.Context) error {
	_, err := n.Ctl(ctx, "set_vm_memory_high_watermark", "0.0000001")
	return err
}

// ClearAlarm restores the default memory watermark, which clears the alarm
// and unblocks the publishers.
func (n *RabbitNode) ClearAlarm(ctx context.Context) error {
	_, err := n.Ctl(ctx, "set_vm_memory_high_watermark", "0.4")
	return err
}

// WaitBlocked publishes on a connection of its own to the node until the
// node says it blocks it (connection.blocked, as after Alarm), and returns
// when it did; after 20s the test fails.
func (n *RabbitNode) WaitBlocked(t testing.TB) time.Time {
	t.Helper()
	conn, err := amqp.Dial(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Closing a blocked connection waits for the broker: do not.
		go func() { _ = conn.Close() }()
	}()
	notify := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		// To no queue: the default exchange drops it.
		_ = ch.PublishWithContext(context.Background(), "", "lull-test-alarm-probe", false, false, amqp.Publishing{Body: []byte("probe")})
		select {
		case b := <-notify:
			if b.Active {
				return time.Now()
			}
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("the broker never blocked a publisher after the memory alarm was raised")
		}
	}
}

// Stop stops the node and waits for its process to exit; a node still
// running when ctx ends is killed. It is idempotent, and runs in the test's
// cleanup anyway.
func (n *RabbitNode) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() {
		select {
		case <-n.exited:
			return
		default:
		}
		if _, err := n.Ctl(ctx, "stop"); err != nil {
			n.stopErr = err
		}
		select {
		case <-n.exited:
		case <-ctx.Done():
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.exited
			n.stopErr = errors.Join(n.stopErr, fmt.Errorf("killed after %w", ctx.Err()))
		}
	})
	return n.stopErr
}

func (n *RabbitNode) serverOutput() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "server.out"))
	return string(b)
}

// cleanEnv is the process environment without the RABBITMQ_ and ERL_
// variables a developer's shell may set for another node.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RABBITMQ_") || strings.HasPrefix(kv, "ERL_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(FreeAddr(t))
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
