-- dead.lua: give up on a batch: move it to the dead-letter store, release the
-- conversation and schedule what arrived meanwhile on its own deadline.
--
-- KEYS[1] batch     <ns>:{sNN}:batch:<key>      HASH the claimed batch
-- KEYS[2] inflight  <ns>:{sNN}:inflight         ZSET conversation key -> lease expiry (Unix ms)
-- KEYS[3] due       <ns>:{sNN}:due              ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[4] meta      <ns>:{sNN}:meta:<key>       HASH gen, first_at, last_at, deadline, reason
-- KEYS[5] buf       <ns>:{sNN}:buf:<key>        LIST buffered message JSON
-- KEYS[6] dead      <ns>:{sNN}:dead             ZSET batch id -> dead-lettered at (Unix ms)
-- KEYS[7] record    <ns>:{sNN}:dead:<batch id>  HASH the dead-lettered batch
--
-- ARGV[1] conversation key
-- ARGV[2] generation of the batch
-- ARGV[3] batch id
-- ARGV[4] why it was given up (the last error)
-- ARGV[5] now, Unix ms; "" = Redis TIME (only tests pass a value)
--
-- Returns {moved, next, now}:
--   moved  1 = dead-lettered; 0 = this batch was not (or no longer) the one in flight
--   next   deadline of the messages buffered meanwhile (Unix ms), -1 when none
--   now    the clock the script used (Unix ms)
local batch_key, inflight_key, due_key, meta_key, buf_key, dead_key, record_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local conv, gen, batch_id, why = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

if redis.call('HGET', batch_key, 'gen') ~= gen then
  return {0, -1, now}
end
redis.call('RENAME', batch_key, record_key)
redis.call('HSET', record_key, 'error', why, 'dead_at', now)
redis.call('HDEL', record_key, 'owner')
redis.call('ZADD', dead_key, now, batch_id)
redis.call('ZREM', inflight_key, conv)
if redis.call('LLEN', buf_key) > 0 then
  local deadline = tonumber(redis.call('HGET', meta_key, 'deadline'))
  if deadline then
    redis.call('ZADD', due_key, deadline, conv)
    return {1, deadline, now}
  end
end
return {1, -1, now}
