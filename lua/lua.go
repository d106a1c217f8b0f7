// Package lua holds lull's Redis scripts. Each script is a .lua file in this
// folder, embedded here and wrapped once; the file's header states its KEYS,
// ARGV and return value. Scripts do the atomic state change and nothing else:
// callers use the typed wrappers in internal/store.
//
// Every script is run with Prelude in front of it: one line that defines
// clock(arg), the script's "now" in Unix ms: the test clock when arg is a
// number (only tests pass one), else Redis TIME. A script reads its clock as
// `local now = clock(ARGV[n])`. The prelude is one line so that Redis's error
// line numbers are the file's plus one.
package lua

import (
	_ "embed"

	"github.com/redis/rueidis"
)

// Prelude opens every script (see the package comment).
const Prelude = "local function clock(arg) local n = tonumber(arg) if n then return n end local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end\n"

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
)

func script(src string) *rueidis.Lua { return rueidis.NewLuaScript(Prelude + src) }

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
)
