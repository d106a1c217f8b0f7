-- commit.lua: a batch was delivered; delete it, record that its generation was
-- committed, release the conversation and schedule what arrived meanwhile on
-- its own deadline.
--
-- KEYS[1] batch     <ns>:{sNN}:batch:<key>   HASH the claimed batch
-- KEYS[2] inflight  <ns>:{sNN}:inflight      ZSET conversation key -> lease expiry (Unix ms)
-- KEYS[3] due       <ns>:{sNN}:due           ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[4] meta      <ns>:{sNN}:meta:<key>    HASH gen, first_at, last_at, deadline, reason, committed, committed_at, recommitted
-- KEYS[5] buf       <ns>:{sNN}:buf:<key>     LIST buffered message JSON
-- KEYS[6] stats     <ns>:{sNN}:stats         HASH the shard's counters: delivered
-- KEYS[7] last      <ns>:{sNN}:last:<key>    HASH the last delivered batch, kept for a discard
--
-- ARGV[1] conversation key
-- ARGV[2] generation of the delivered batch
-- ARGV[3] safety TTL of meta, ms: only used when meta is gone, so that the
--         committed mark never makes a key without expiry
-- ARGV[4] now, Unix ms; "" = Redis TIME (only tests pass a value)
-- ARGV[5] how long the delivered batch is kept (as KEYS[7], with delivered_at)
--         so that a bot can discard it (discard.lua), ms; "" or 0 = not kept
--
-- Returns {status, next, now}:
--   status  1 = committed now
--           2 = already committed: this generation was committed before (a
--               retry whose first reply was lost); nothing changed
--           0 = taken over: another generation holds the batch, or it is gone
--               without having been committed (dead-lettered, say)
--   next    deadline of the messages buffered meanwhile (Unix ms), -1 when none
--   now     the clock the script used (Unix ms)
local batch_key, inflight_key, due_key, meta_key, buf_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local conv, gen, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local keep = tonumber(ARGV[5]) or 0
local now = clock(ARGV[4])

-- The deadline of what is buffered, or -1.
local function next_deadline()
  if redis.call('LLEN', buf_key) > 0 then
    local deadline = tonumber(redis.call('HGET', meta_key, 'deadline'))
    if deadline then
      return deadline
    end
  end
  return -1
end

if redis.call('HGET', batch_key, 'gen') ~= gen then
  -- Generations only grow, and a generation is committed at most once, so
  -- the mark tells a lost reply from a take-over even when a later batch of
  -- the conversation is in flight by now. The deadline is returned so the
  -- caller can still wake its scheduler, which the lost reply never did.
  local m = redis.call('HMGET', meta_key, 'committed', 'recommitted')
  if m[1] == gen or m[2] == gen then
    return {2, next_deadline(), now}
  end
  return {0, -1, now}
end
-- committed only grows (it is the conversation's last delivered batch); a
-- replayed older batch is marked as recommitted instead, for the lost-reply
-- check above, and is not kept for a discard.
local newest = (tonumber(redis.call('HGET', meta_key, 'committed')) or 0) < tonumber(gen)
if keep > 0 and newest then
  redis.call('RENAME', batch_key, KEYS[7])
  redis.call('HDEL', KEYS[7], 'owner')
  redis.call('HSET', KEYS[7], 'delivered_at', now)
  redis.call('PEXPIRE', KEYS[7], keep)
else
  redis.call('DEL', batch_key)
end
redis.call('ZREM', inflight_key, conv)
-- Meta that expired meanwhile (a dead letter replayed days later) gets a
-- generation back, so that the conversation's next messages count on from
-- this batch.
redis.call('HSETNX', meta_key, 'gen', gen)
if newest then
  redis.call('HSET', meta_key, 'committed', gen, 'committed_at', now)
else
  redis.call('HSET', meta_key, 'recommitted', gen)
end
redis.call('HINCRBY', stats_key, 'delivered', 1)
if redis.call('PTTL', meta_key) < 0 and ttl and ttl > 0 then
  redis.call('PEXPIRE', meta_key, ttl)
end
local deadline = next_deadline()
if deadline >= 0 then
  redis.call('ZADD', due_key, deadline, conv)
end
return {1, deadline, now}
