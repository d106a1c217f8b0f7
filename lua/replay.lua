-- replay.lua: put a dead-lettered batch back in flight, with its batch id and
-- messages unchanged, for the next worker's reclaimer to deliver at once.
--
-- KEYS[1] dead      <ns>:{sNN}:dead             ZSET batch id -> dead-lettered at (Unix ms)
-- KEYS[2] record    <ns>:{sNN}:dead:<batch id>  HASH the dead-lettered batch
-- KEYS[3] batch     <ns>:{sNN}:batch:<key>      HASH the conversation's batch in flight
-- KEYS[4] inflight  <ns>:{sNN}:inflight         ZSET conversation key -> lease expiry (Unix ms)
--
-- ARGV[1] conversation key
-- ARGV[2] batch id
-- ARGV[3] now, Unix ms; "" = Redis TIME (only tests pass a value)
--
-- The record carries the dead-letter retention's expiry; the batch in flight
-- must not, so it is made persistent again.
--
-- Returns {1, "replayed"}, or {0, "gone"} (no such dead letter) or {0, "busy"}
-- (the conversation has a batch in flight; replay once it is delivered).
local dead_key, record_key, batch_key, inflight_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local conv, batch_id = ARGV[1], ARGV[2]
local now = clock(ARGV[3])

if redis.call('EXISTS', record_key) == 0 then
  return {0, 'gone'}
end
if redis.call('EXISTS', batch_key) == 1 then
  return {0, 'busy'}
end
redis.call('RENAME', record_key, batch_key)
redis.call('PERSIST', batch_key)
redis.call('HDEL', batch_key, 'error', 'dead_at')
redis.call('HSET', batch_key, 'attempt', 0, 'owner', '', 'replayed_at', now)
redis.call('ZREM', dead_key, batch_id)
redis.call('ZADD', inflight_key, now, conv)
return {1, 'replayed'}
