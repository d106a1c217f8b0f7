-- commit.lua: a batch was delivered; delete it, release the conversation and
-- schedule what arrived meanwhile on its own deadline.
--
-- KEYS[1] batch     <ns>:{sNN}:batch:<key>   HASH the claimed batch
-- KEYS[2] inflight  <ns>:{sNN}:inflight      ZSET conversation key -> lease expiry (Unix ms)
-- KEYS[3] due       <ns>:{sNN}:due           ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[4] meta      <ns>:{sNN}:meta:<key>    HASH gen, first_at, last_at, deadline, reason
-- KEYS[5] buf       <ns>:{sNN}:buf:<key>     LIST buffered message JSON
--
-- ARGV[1] conversation key
-- ARGV[2] generation of the delivered batch
--
-- Returns {committed, next, now}:
--   committed  1 = deleted; 0 = this batch was not (or no longer) the one in flight
--   next       deadline of the messages buffered meanwhile (Unix ms), -1 when none
--   now        Redis clock (Unix ms)
local batch_key, inflight_key, due_key, meta_key, buf_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local conv, gen = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('HGET', batch_key, 'gen') ~= gen then
  return {0, -1, now}
end
redis.call('DEL', batch_key)
redis.call('ZREM', inflight_key, conv)
if redis.call('LLEN', buf_key) > 0 then
  local deadline = tonumber(redis.call('HGET', meta_key, 'deadline'))
  if deadline then
    redis.call('ZADD', due_key, deadline, conv)
    return {1, deadline, now}
  end
end
return {1, -1, now}
