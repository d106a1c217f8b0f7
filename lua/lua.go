// Package lua holds lull's Redis scripts. Each script is a .lua file in this
// folder, embedded here and wrapped once; the file's header states its KEYS,
// ARGV and return value. Scripts do the atomic state change and nothing else:
// callers use the typed wrappers in internal/store.
//
// Every script is run with Prelude in front of it: one line that defines
// clock(arg), the script's "now" in Unix ms: the test clock when arg is a
// number (only tests pass one), else Redis TIME. A script reads its clock as
// `local now = clock(ARGV[n])`. It also defines due_at_once, the flush
// reasons of a buffer due at once (a full buffer, a slice's rest, a flush
// word, a manual flush, a resume), which neither a new message (append.lua)
// nor typing (schedule.lua) puts off. The prelude is one line so that
// Redis's error line numbers are the file's plus one.
package lua

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// Prelude opens every script (see the package comment).
const Prelude = "local function clock(arg) local n = tonumber(arg) if n then return n end local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end " +
	"local due_at_once = {max_messages = true, max_bytes = true, immediate = true, manual = true, resumed = true}\n"

var (
	//go:embed append.lua
	appendSrc string
	//go:embed ready.lua
	readySrc string
	//go:embed flush.lua
	flushSrc string
	//go:embed renew.lua
	renewSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed commit.lua
	commitSrc string
	//go:embed reclaim.lua
	reclaimSrc string
	//go:embed dead.lua
	deadSrc string
	//go:embed replay.lua
	replaySrc string
	//go:embed schedule.lua
	scheduleSrc string
	//go:embed pause.lua
	pauseSrc string
	//go:embed cancel.lua
	cancelSrc string
	//go:embed discard.lua
	discardSrc string
)

// Script is one of the scripts, Prelude included.
type Script struct {
	lua *rueidis.Lua
	src string
	// SHA is the script's SHA1, the name EVALSHA runs it by.
	SHA string
}

func script(src string) *Script {
	src = Prelude + src
	sum := sha1.Sum([]byte(src))
	return &Script{lua: rueidis.NewLuaScript(src), src: src, SHA: hex.EncodeToString(sum[:])}
}

// Exec runs the script once: EVALSHA, and EVAL when Redis does not have it
// cached.
func (s *Script) Exec(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	return s.lua.Exec(ctx, c, keys, args)
}

// ExecMulti runs the script once per exec in one round trip of EVALSHA
// commands. The few that Redis answers NOSCRIPT (its script cache was
// emptied: a restart, SCRIPT FLUSH) run again with EVAL, which caches the
// script for the next calls. (rueidis's own Lua.ExecMulti sends a SCRIPT
// LOAD of the whole script first, on every call: one more round trip.)
func (s *Script) ExecMulti(ctx context.Context, c rueidis.Client, execs ...rueidis.LuaExec) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = c.B().Evalsha().Sha1(s.SHA).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	var again []int
	for i, r := range res {
		if e, ok := rueidis.IsRedisErr(r.Error()); ok && e.IsNoScript() {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return res
	}
	cmds = cmds[:0]
	for _, i := range again {
		e := execs[i]
		cmds = append(cmds, c.B().Eval().Script(s.src).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build())
	}
	for j, r := range c.DoMulti(ctx, cmds...) {
		res[again[j]] = r
	}
	return res
}

// The scripts, run with EVALSHA (falling back to EVAL on a cold cache).
var (
	Append   = script(appendSrc)
	Ready    = script(readySrc)
	Flush    = script(flushSrc)
	Renew    = script(renewSrc)
	Release  = script(releaseSrc)
	Commit   = script(commitSrc)
	Reclaim  = script(reclaimSrc)
	Dead     = script(deadSrc)
	Replay   = script(replaySrc)
	Schedule = script(scheduleSrc)
	Pause    = script(pauseSrc)
	Cancel   = script(cancelSrc)
	Discard  = script(discardSrc)
)
