//go:build cluster

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/keys"
)

// clusters are the Redis Cluster (3 masters, a replica each) and the
// 3-node RabbitMQ cluster of scripts/cluster.sh, started on free ports in
// a directory of the test's own.
type clusters struct {
	t         *testing.T
	dir       string
	redisURL  string
	amqpURL   string
	redisPort int // first of 6: masters, then replicas
	redis     rueidis.Client
}

// startClusters runs `scripts/cluster.sh up`; `down` runs when the test ends.
func startClusters(t *testing.T) *clusters {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not on PATH: %v", bin, err)
		}
	}
	c := &clusters{t: t, dir: filepath.Join(t.TempDir(), "cluster")}
	// Six Redis ports and their cluster bus ports (+10000), three AMQP
	// and three distribution ports, all free, and all below the ephemeral
	// range (32768 and up on Linux): a port checked free there can be
	// taken by an outgoing connection before the server binds it.
	c.redisPort = freeRange(t, 6, 11000, 15000, 10000)
	amqpPort := freeRange(t, 3, 16000, 19000, 0)
	distPort := freeRange(t, 3, 26000, 29000, 0)
	env := append(os.Environ(),
		"LULL_CLUSTER_DIR="+c.dir,
		fmt.Sprintf("LULL_CLUSTER_NAME=lulltest%x", rand.Uint32()),
		"LULL_CLUSTER_REDIS_PORT="+strconv.Itoa(c.redisPort),
		"LULL_CLUSTER_AMQP_PORT="+strconv.Itoa(amqpPort),
		"LULL_CLUSTER_DIST_PORT="+strconv.Itoa(distPort),
	)
	t.Cleanup(func() {
		if out, err := c.script(env, "down"); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	start := time.Now()
	out, err := c.script(env, "up")
	require.NoError(t, err, "cluster.sh up:\n%s", out)
	t.Logf("clusters up in %s", time.Since(start).Round(100*time.Millisecond))
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "REDIS_URL="); ok {
			c.redisURL = v
		}
		if v, ok := strings.CutPrefix(line, "AMQP_URL="); ok {
			c.amqpURL = v
		}
	}
	require.NotEmpty(t, c.redisURL, out)
	require.NotEmpty(t, c.amqpURL, out)
	opt, err := rueidis.ParseURL(c.redisURL)
	require.NoError(t, err)
	opt.DisableCache = true
	c.redis, err = rueidis.NewClient(opt)
	require.NoError(t, err)
	t.Cleanup(c.redis.Close)
	require.Equal(t, rueidis.ClientModeCluster, c.redis.Mode(), "the client must see a cluster")
	return c
}

// script runs scripts/cluster.sh args with env (nil: the cluster's own,
// from its directory) and returns its combined output.
func (c *clusters) script(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"../scripts/cluster.sh"}, args...)...)
	if env == nil {
		env = append(os.Environ(), "LULL_CLUSTER_DIR="+c.dir)
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run is script with the cluster's environment, failing the test on error.
func (c *clusters) run(args ...string) string {
	c.t.Helper()
	out, err := c.script(nil, args...)
	require.NoError(c.t, err, "cluster.sh %s:\n%s", strings.Join(args, " "), out)
	return out
}

// freeRange finds n consecutive ports from a random base in [lo, hi) that
// are free, as are the ports offset above each when offset > 0.
func freeRange(t *testing.T, n, lo, hi, offset int) int {
	t.Helper()
	for range 200 {
		base := lo + rand.IntN(hi-lo-n)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ok = portFree(p) && (offset == 0 || portFree(p+offset))
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports in [%d, %d)", n, lo, hi)
	return 0
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// redisNode is one line of CLUSTER NODES.
type redisNode struct {
	id, addr string
	master   bool
	failed   bool
	slots    [][2]int
}

// nodes reads CLUSTER NODES from the first node of ports that answers.
func (c *clusters) nodes(ports ...int) []redisNode {
	c.t.Helper()
	for _, port := range ports {
		out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "cluster", "nodes").Output()
		if err != nil || len(out) == 0 {
			continue
		}
		var nodes []redisNode
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			n := redisNode{id: f[0], addr: strings.Split(f[1], "@")[0], master: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
			for _, r := range f[8:] {
				lo, hi, found := strings.Cut(r, "-")
				a, err := strconv.Atoi(lo)
				if err != nil {
					continue // a slot being migrated, [..]
				}
				b := a
				if found {
					b, _ = strconv.Atoi(hi)
				}
				n.slots = append(n.slots, [2]int{a, b})
			}
			nodes = append(nodes, n)
		}
		return nodes
	}
	c.t.Fatalf("no node of %v answers CLUSTER NODES", ports)
	return nil
}

// ports are the six Redis ports.
func (c *clusters) ports() []int {
	out := make([]int, 6)
	for i := range out {
		out[i] = c.redisPort + i
	}
	return out
}

// shardsOn counts the shards ({sNN} tags) whose slot node serves.
func (n redisNode) shardsOn() int {
	count := 0
	for s := range keys.Shards {
		slot := keys.Slot(keys.New("x").Due(s))
		for _, r := range n.slots {
			if slot >= r[0] && slot <= r[1] {
				count++
				break
			}
		}
	}
	return count
}

// busiestMaster is the live master that serves the most shards.
func (c *clusters) busiestMaster() redisNode {
	c.t.Helper()
	var best redisNode
	for _, n := range c.nodes(c.ports()...) {
		if n.master && !n.failed && n.shardsOn() > best.shardsOn() {
			best = n
		}
	}
	require.NotEmpty(c.t, best.addr, "no live master")
	return best
}

// masterOf reports the address of the live master serving slot.
func (c *clusters) masterOf(slot int, ports ...int) string {
	for _, n := range c.nodes(ports...) {
		if !n.master || n.failed {
			continue
		}
		for _, r := range n.slots {
			if slot >= r[0] && slot <= r[1] {
				return n.addr
			}
		}
	}
	return ""
}

// quorumLeader is the RabbitMQ node (1-3) leading queue's quorum, and its
// member count.
func (c *clusters) quorumLeader(queue string) (node, members int) {
	c.t.Helper()
	out := c.run("ctl", "1", "list_queues", "name", "leader", "members", "--quiet", "--no-table-headers")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != queue {
			continue
		}
		return nodeNumber(f[1]), strings.Count(strings.Join(f[2:], " "), "@")
	}
	c.t.Fatalf("queue %s not listed:\n%s", queue, out)
	return 0, 0
}

// activeConsumerNode is the node whose connection holds queue's active
// consumer (the worker appending), 0 when none is listed.
func (c *clusters) activeConsumerNode(queue string) int {
	c.t.Helper()
	out := c.run("ctl", "1", "list_consumers", "queue_name", "channel_pid", "active", "--quiet", "--no-table-headers")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == queue && f[2] == "true" {
			return nodeNumber(f[1])
		}
	}
	return 0
}

// nodeNumber is N of a node name (prefix-N@host) or of a pid on it
// (<prefix-N@host.1.2.3>).
func nodeNumber(s string) int {
	_, rest, _ := strings.Cut(strings.TrimPrefix(s, "<"), "-")
	n, _ := strconv.Atoi(strings.Split(rest, "@")[0])
	return n
}
