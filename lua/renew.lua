-- renew.lua: extend the lease of a claimed batch, and record a delivery attempt
-- (a retry; the first attempt is counted by the claim itself).
--
-- KEYS[1] batch     <ns>:{sNN}:batch:<key>   HASH the claimed batch
-- KEYS[2] inflight  <ns>:{sNN}:inflight      ZSET conversation key -> lease expiry (Unix ms)
--
-- ARGV[1] conversation key
-- ARGV[2] generation of the batch
-- ARGV[3] owner holding the lease
-- ARGV[4] lease, ms
-- ARGV[5] 0 = only extend the lease; N > 0 = this is delivery attempt N: the
--         count becomes N unless it is already higher. Naming the attempt
--         (rather than adding one) makes a retry after a lost reply count
--         nothing twice.
-- ARGV[6] now, Unix ms; "" = Redis TIME (only tests pass a value)
-- ARGV[7] optional: the error of the attempt that just failed, kept in the
--         batch as last_error (with last_error_at) for operators; "" = none
--
-- Returns the batch's attempt count, or -1 when the caller no longer holds the
-- batch (committed, or reclaimed by another owner after the lease expired).
local batch_key, inflight_key = KEYS[1], KEYS[2]
local conv, gen, owner, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local attempt = tonumber(ARGV[5]) or 0
local now = clock(ARGV[6])

local held = redis.call('HMGET', batch_key, 'gen', 'owner', 'attempt')
if held[1] ~= gen or held[2] ~= owner then
  return -1
end
redis.call('ZADD', inflight_key, now + lease, conv)
if ARGV[7] and ARGV[7] ~= '' then
  redis.call('HSET', batch_key, 'last_error', ARGV[7], 'last_error_at', now)
end
local count = tonumber(held[3]) or 0
if attempt > count then
  redis.call('HSET', batch_key, 'attempt', attempt)
  return attempt
end
return count
