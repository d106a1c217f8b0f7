package lua_test

import (
	"context"
	"testing"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/testenv"
	"github.com/lullhq/lull/lua"
)

// ExecMulti runs a script by its SHA in one round trip, and by its source
// when Redis's script cache was emptied (a restart, SCRIPT FLUSH); either
// way Redis then knows the script under the SHA it is run by.
func TestScript_ExecMultiSurvivesAnEmptyScriptCache(t *testing.T) {
	redis := testenv.StartRedisServer(t)
	c, ctx := redis.Client, context.Background()
	require.NoError(t, c.Do(ctx, c.B().Zadd().Key("{s}:due").ScoreMember().ScoreMember(5, "a").ScoreMember(50, "b").Build()).Error())
	ready := func() []rueidis.RedisResult {
		return lua.Ready.ExecMulti(ctx, c,
			rueidis.LuaExec{Keys: []string{"{s}:due"}, Args: []string{"10", "10"}},
			rueidis.LuaExec{Keys: []string{"{s}:due"}, Args: []string{"10", "60"}})
	}
	for _, flush := range []bool{true, false, true} {
		if flush {
			require.NoError(t, c.Do(ctx, c.B().ScriptFlush().Build()).Error())
		}
		res := ready()
		require.Equal(t, []any{int64(10), int64(50), "a", int64(5)}, values(t, res[0]), "now 10: a is due, b next at 50")
		require.Equal(t, []any{int64(60), int64(-1), "a", int64(5), "b", int64(50)}, values(t, res[1]))
		exists, err := c.Do(ctx, c.B().ScriptExists().Sha1(lua.Ready.SHA).Build()).AsIntSlice()
		require.NoError(t, err)
		require.Equal(t, []int64{1}, exists, "Redis has the script under its SHA")
	}
}

func values(t *testing.T, r rueidis.RedisResult) []any {
	t.Helper()
	msgs, err := r.ToArray()
	require.NoError(t, err)
	out := make([]any, len(msgs))
	for i, m := range msgs {
		if n, err := m.AsInt64(); err == nil && !m.IsString() {
			out[i] = n
			continue
		}
		out[i], err = m.ToString()
		require.NoError(t, err)
	}
	return out
}
