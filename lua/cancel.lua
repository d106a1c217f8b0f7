-- cancel.lua: drop what a conversation holds buffered and not yet claimed (a
-- bot or an operator asked); the next message starts a new burst. A batch in
-- flight is not touched.
--
-- KEYS[1] buf    <ns>:{sNN}:buf:<key>    LIST buffered message JSON
-- KEYS[2] meta   <ns>:{sNN}:meta:<key>   HASH gen, first_at, deadline, reason, bytes, was_paused, replaces
-- KEYS[3] due    <ns>:{sNN}:due          ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[4] stats  <ns>:{sNN}:stats        HASH the shard's counters: cancelled
--
-- ARGV[1] conversation key
--
-- Returns the dropped messages (JSON), in arrival order; empty when nothing
-- was buffered.
local buf_key, meta_key, due_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local conv = ARGV[1]

local msgs = redis.call('LRANGE', buf_key, 0, -1)
if #msgs == 0 then
  return msgs
end
redis.call('DEL', buf_key)
redis.call('HDEL', meta_key, 'first_at', 'deadline', 'reason', 'bytes', 'was_paused', 'replaces')
-- A batch in flight reschedules what arrives meanwhile at its commit.
redis.call('ZREM', due_key, conv)
redis.call('HINCRBY', stats_key, 'cancelled', #msgs)
return msgs
