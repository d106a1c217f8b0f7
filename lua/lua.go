// Package lua holds lull's Redis scripts. Each script is a .lua file in this
// folder, embedded here and wrapped once; the file's header states its KEYS,
// ARGV and return value. Scripts do the atomic state change and nothing else:
// callers use the typed wrappers in internal/buffer.
package lua

import (
	_ "embed"

	"github.com/redis/rueidis"
)

var (
	//go:embed append.lua
	appendSrc string
	//go:embed ready.lua
	readySrc string
	//go:embed flush.lua
	flushSrc string
	//go:embed renew.lua
	renewSrc string
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

// The scripts, run with EVALSHA (falling back to EVAL on a cold cache).
var (
	Append   = rueidis.NewLuaScript(appendSrc)
	Ready    = rueidis.NewLuaScript(readySrc)
	Flush    = rueidis.NewLuaScript(flushSrc)
	Renew    = rueidis.NewLuaScript(renewSrc)
	Commit   = rueidis.NewLuaScript(commitSrc)
	Reclaim  = rueidis.NewLuaScript(reclaimSrc)
	Dead     = rueidis.NewLuaScript(deadSrc)
	Replay   = rueidis.NewLuaScript(replaySrc)
	Schedule = rueidis.NewLuaScript(scheduleSrc)
)
