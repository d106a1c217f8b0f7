package store_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/lua"
)

// slotCheck is a rueidis.Client that checks, for every script call it
// passes on, what Redis Cluster would refuse with CROSSSLOT: that the
// script's keys all hash to one slot, and that the call passes as many keys
// as the script's header lists (KEYS[n] lines). Every store test runs on
// it (setup), and TestMain checks that every script was called.
type slotCheck struct {
	rueidis.Client
	t testing.TB
}

// scriptCalls counts, per script SHA1, the calls slotCheck saw.
var scriptCalls = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// scriptsBySHA names every script and gives the number of KEYS its header lists.
var scriptsBySHA = func() map[string]scriptInfo {
	out := map[string]scriptInfo{}
	for name, s := range map[string]*lua.Script{
		"append": lua.Append, "ready": lua.Ready, "flush": lua.Flush, "renew": lua.Renew,
		"release": lua.Release, "commit": lua.Commit, "reclaim": lua.Reclaim, "dead": lua.Dead,
		"replay": lua.Replay, "schedule": lua.Schedule, "pause": lua.Pause, "cancel": lua.Cancel,
		"discard": lua.Discard,
	} {
		src, err := os.ReadFile("../../lua/" + name + ".lua")
		if err != nil {
			panic(err)
		}
		out[s.SHA] = scriptInfo{name: name, keys: len(headerKeyRE.FindAllString(string(src), -1))}
	}
	return out
}()

type scriptInfo struct {
	name string
	keys int // KEYS[n] lines of its header
}

var headerKeyRE = regexp.MustCompile(`(?m)^-- KEYS\[\d+\] `)

func (c slotCheck) check(cmd rueidis.Completed) {
	args := cmd.Commands()
	if len(args) < 3 || (args[0] != "EVALSHA" && args[0] != "EVAL") {
		return
	}
	sha := args[1]
	if args[0] == "EVAL" {
		sum := sha1.Sum([]byte(args[1]))
		sha = hex.EncodeToString(sum[:])
	}
	info, ok := scriptsBySHA[sha]
	if !ok {
		c.t.Errorf("a script that is none of lua's: %.60q", args[1])
		return
	}
	n, err := strconv.Atoi(args[2])
	if err != nil || len(args) < 3+n {
		c.t.Errorf("%s: bad numkeys %q", info.name, args[2])
		return
	}
	if n != info.keys {
		c.t.Errorf("%s: called with %d keys, its header lists %d", info.name, n, info.keys)
	}
	slots := map[int][]string{}
	for _, k := range args[3 : 3+n] {
		slots[keys.Slot(k)] = append(slots[keys.Slot(k)], k)
	}
	if len(slots) > 1 {
		c.t.Errorf("%s: keys in %d slots (CROSSSLOT on Redis Cluster): %v", info.name, len(slots), slots)
	}
	scriptCalls.Lock()
	scriptCalls.n[sha]++
	scriptCalls.Unlock()
}

func (c slotCheck) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	c.check(cmd)
	return c.Client.Do(ctx, cmd)
}

func (c slotCheck) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	for _, cmd := range multi {
		c.check(cmd)
	}
	return c.Client.DoMulti(ctx, multi...)
}

// uncalledScripts lists the scripts no store test called through slotCheck.
func uncalledScripts() []string {
	scriptCalls.Lock()
	defer scriptCalls.Unlock()
	var out []string
	for sha, info := range scriptsBySHA {
		if scriptCalls.n[sha] == 0 {
			out = append(out, info.name)
		}
	}
	sort.Strings(out)
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	// Only a whole run calls every script (not -run, -short or a failed one).
	if code == 0 && flagValue("test.run") == "" && flagValue("test.skip") == "" && !testing.Short() {
		if missing := uncalledScripts(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: no store test called these scripts, so their key slots went unchecked: %s\n", strings.Join(missing, ", "))
			code = 1
		}
	}
	os.Exit(code)
}

func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}
