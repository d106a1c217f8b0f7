-- dead.lua: give up on a batch: move it to the dead-letter store, release the
-- conversation and schedule what arrived meanwhile on its own deadline; then
-- apply the shard's dead-letter retention.
--
-- KEYS[1] batch     <ns>:{sNN}:batch:<key>      HASH the claimed batch
-- KEYS[2] inflight  <ns>:{sNN}:inflight         ZSET conversation key -> lease expiry (Unix ms)
-- KEYS[3] due       <ns>:{sNN}:due              ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[4] meta      <ns>:{sNN}:meta:<key>       HASH gen, first_at, last_at, deadline, reason
-- KEYS[5] buf       <ns>:{sNN}:buf:<key>        LIST buffered message JSON
-- KEYS[6] dead      <ns>:{sNN}:dead             ZSET batch id -> dead-lettered at (Unix ms)
-- KEYS[7] record    <ns>:{sNN}:dead:<batch id>  HASH the dead-lettered batch
-- KEYS[8] stats     <ns>:{sNN}:stats            HASH the shard's counters: dead
--
-- ARGV[1] conversation key
-- ARGV[2] generation of the batch
-- ARGV[3] batch id
-- ARGV[4] why it was given up (the last error)
-- ARGV[5] now, Unix ms; "" = Redis TIME (only tests pass a value)
-- ARGV[6] retention, ms (> 0): the record and the dead set expire this long
--         after the last dead letter, and entries older than this are trimmed
-- ARGV[7] most entries the shard's dead set keeps (> 0): its share of
--         DEAD_LETTER_MAX; beyond it the oldest go, with their records
-- ARGV[8] record prefix <ns>:{sNN}:dead: — the record of batch id X is
--         prefix..X (KEYS[7] is prefix..ARGV[3]).
--
-- Exception to "keys come in KEYS": trimming deletes the records of other,
-- older batches, which no caller can know in advance. Their names are derived
-- from ARGV[8], and the script refuses (before writing anything) a prefix
-- whose hash tag is not KEYS[6]'s, so every key it touches is in KEYS[6]'s
-- slot and the script stays cluster-safe. Doing it here, not in a second call
-- from the caller, keeps the set and the records consistent: a trimmed id
-- never outlives its record, nor a record its id.
--
-- Returns {moved, next, now}:
--   moved  1 = dead-lettered; 0 = this batch was not (or no longer) the one in flight
--   next   deadline of the messages buffered meanwhile (Unix ms), -1 when none
--   now    the clock the script used (Unix ms)
local batch_key, inflight_key, due_key, meta_key, buf_key, dead_key, record_key, stats_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local conv, gen, batch_id, why = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, keep, prefix = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]

local function hashtag(key)
  return string.match(key, '{([^}]+)}')
end
if not ttl or ttl <= 0 or not keep or keep < 1 then
  return redis.error_reply('dead.lua: retention and limit must be positive')
end
local tag = hashtag(dead_key)
if not tag or hashtag(prefix) ~= tag or record_key ~= prefix .. batch_id then
  return redis.error_reply('dead.lua: record prefix must share the dead set\'s hash tag')
end

local now = clock(ARGV[5])

if redis.call('HGET', batch_key, 'gen') ~= gen then
  return {0, -1, now}
end
redis.call('RENAME', batch_key, record_key)
redis.call('HSET', record_key, 'error', why, 'dead_at', now)
redis.call('HDEL', record_key, 'owner')
redis.call('PEXPIRE', record_key, ttl)
redis.call('ZADD', dead_key, now, batch_id)
redis.call('ZREM', inflight_key, conv)
redis.call('HINCRBY', stats_key, 'dead', 1)

-- Retention. drop removes ids from the set and deletes their records, in
-- chunks (unpack has a bounded stack).
local function drop(ids)
  for i = 1, #ids, 500 do
    local members, records = {}, {}
    for j = i, math.min(i + 499, #ids) do
      members[#members + 1] = ids[j]
      records[#records + 1] = prefix .. ids[j]
    end
    redis.call('ZREM', dead_key, unpack(members))
    redis.call('DEL', unpack(records))
  end
end
-- Older than the retention: their records have expired (or are about to).
drop(redis.call('ZRANGEBYSCORE', dead_key, '-inf', '(' .. (now - ttl)))
-- Beyond the shard's share: the oldest go, never the one just added.
local excess = redis.call('ZCARD', dead_key) - keep
if excess > 0 then
  local ids = {}
  for _, id in ipairs(redis.call('ZRANGE', dead_key, 0, excess)) do
    if id ~= batch_id and #ids < excess then
      ids[#ids + 1] = id
    end
  end
  drop(ids)
end
-- The set lives as long as its newest record.
redis.call('PEXPIRE', dead_key, ttl)

if redis.call('LLEN', buf_key) > 0 then
  local deadline = tonumber(redis.call('HGET', meta_key, 'deadline'))
  if deadline then
    redis.call('ZADD', due_key, deadline, conv)
    return {1, deadline, now}
  end
end
return {1, -1, now}
