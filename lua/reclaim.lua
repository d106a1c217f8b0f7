-- reclaim.lua: take over a batch whose lease expired (its worker died or hung),
-- to deliver the same batch again. Exactly one caller wins. The take-over
-- counts nothing: the new owner counts its attempt when its delivery begins
-- (renew.lua), so a take-over it does not deliver counts no attempt.
--
-- KEYS[1] inflight  <ns>:{sNN}:inflight      ZSET conversation key -> lease expiry (Unix ms)
-- KEYS[2] batch     <ns>:{sNN}:batch:<key>   HASH the claimed batch
--
-- ARGV[1] conversation key
-- ARGV[2] lease, ms
-- ARGV[3] new owner (worker id)
-- ARGV[4] now, Unix ms; "" = Redis TIME (only tests pass a value)
--
-- Returns one of
--   {1, generation, reason, flushed_at, attempt, messages, 0, 0, paused, replaces}
--                 reclaimed; messages is a JSON array, attempt the delivery
--                 attempts counted so far, paused and replaces as flush.lua
--                 recorded them (the two zeros keep flush.lua's layout)
--   {0, "held"}  the lease has not expired (or is gone)
--   {0, "gone"}  a lease without a batch; the lease was removed
local inflight_key, batch_key = KEYS[1], KEYS[2]
local conv, lease, owner = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = clock(ARGV[4])

local lease_end = tonumber(redis.call('ZSCORE', inflight_key, conv))
if not lease_end or lease_end > now then
  return {0, 'held'}
end
local b = redis.call('HMGET', batch_key, 'gen', 'reason', 'flushed_at', 'attempt', 'messages', 'paused', 'replaces')
if not b[1] then
  redis.call('ZREM', inflight_key, conv)
  return {0, 'gone'}
end
redis.call('HSET', batch_key, 'owner', owner)
redis.call('ZADD', inflight_key, now + lease, conv)
return {1, tonumber(b[1]), b[2], tonumber(b[3]), tonumber(b[4]), b[5], 0, 0, tonumber(b[6]) or 0, b[7] or ''}
