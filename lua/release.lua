-- release.lua: give up a claimed batch's lease at once (a worker shutting
-- down, or one that lost Redis for a whole lease), so that any worker's
-- reclaimer re-drives the same batch on its next scan instead of after the
-- lease.
--
-- KEYS[1] batch     <ns>:{sNN}:batch:<key>   HASH the claimed batch
-- KEYS[2] inflight  <ns>:{sNN}:inflight      ZSET conversation key -> lease expiry (Unix ms)
--
-- ARGV[1] conversation key
-- ARGV[2] generation of the batch
-- ARGV[3] owner holding the lease
-- ARGV[4] now, Unix ms; "" = Redis TIME (only tests pass a value)
--
-- Returns 1 when released, -1 when the caller no longer holds the batch
-- (committed, dead-lettered, or reclaimed by another owner).
local batch_key, inflight_key = KEYS[1], KEYS[2]
local conv, gen, owner = ARGV[1], ARGV[2], ARGV[3]
local now = clock(ARGV[4])

local held = redis.call('HMGET', batch_key, 'gen', 'owner')
if held[1] ~= gen or held[2] ~= owner then
  return -1
end
redis.call('ZADD', inflight_key, now, conv)
return 1
