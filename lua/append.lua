-- append.lua: store one message in a conversation's buffer and (re)schedule its flush.
--
-- KEYS[1] buf      <ns>:{sNN}:buf:<key>    LIST of message JSON, arrival order
-- KEYS[2] meta     <ns>:{sNN}:meta:<key>   HASH gen, first_at, last_at, deadline, reason, bytes (of buf),
--                                           gap (adaptive window), paused, paused_until,
--                                           seq (messages stored so far: what "current" compares)
-- KEYS[3] seen     <ns>:{sNN}:seen:<key>   ZSET message id -> receipt (Unix ms), the dedupe window
-- KEYS[4] due      <ns>:{sNN}:due          ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[5] stats    <ns>:{sNN}:stats        HASH the shard's counters: appended, duplicates, cancelled
--
-- ARGV[1] conversation key (the member in due)
-- ARGV[2] message id
-- ARGV[3] message JSON
-- ARGV[4] quiet window, ms
-- ARGV[5] max wait, ms (0 = no cap)
-- ARGV[6] max batch messages (flush at once when the buffer holds this many)
-- ARGV[7] dedupe window, ms
-- ARGV[8] safety TTL of buf and meta, ms (a leak guard, never the flush mechanism)
-- ARGV[9] now, Unix ms; "" = Redis TIME (only tests pass a value)
-- ARGV[10] "1" = flush at once (an immediate-flush rule matched), else ""
-- ARGV[11] when the api received the message, Unix ms; "" = unknown
-- ARGV[12] "cancel" = the message is a cancel word: drop what is buffered (not
--          yet claimed) and the message itself; the next message starts a new
--          burst. "" = a plain message
-- ARGV[13] adaptive window: the shortest window, ms; "" = a fixed window
--          (ARGV[4]). With it the window is clamp(k * gap, ARGV[13], ARGV[4]),
--          gap an EWMA (weight 0.3 for the newest) of the conversation's gaps
--          between messages of one burst, kept in meta as gap; no gap learnt
--          yet, the window is ARGV[4]
-- ARGV[14] adaptive window: k
--
-- The quiet window and the max wait run from when the message counts as
-- arrived: the api's receipt, so that a worker lagging behind its queue does
-- not push deadlines back by its lag — but never earlier than half a quiet
-- window before now, so that under a long lag a burst whose later messages
-- are still queued is not split (a gap below half the window never splits),
-- never later than now (a clock ahead), and never before the conversation's
-- previous message counted (last_at: deadlines only move forward).
--
-- A paused conversation (pause.lua) keeps its messages: they are scheduled no
-- earlier than the pause's end, or not at all while paused until resumed.
--
-- Returns {stored, generation, count, deadline, now, dropped}:
--   stored     1 = appended, 0 = duplicate message id (nothing changed)
--   generation the conversation's generation after this call
--   count      messages in the buffer
--   deadline   the flush deadline now in force (Unix ms; -1 when not scheduled)
--   now        the clock the script used (Unix ms)
--   dropped    messages a cancel word dropped (the word included), else 0
local buf_key, meta_key, seen_key, due_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local conv, id, msg = ARGV[1], ARGV[2], ARGV[3]
local quiet, max_wait, max_msgs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local dedupe, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])

-- Nothing is written when a key holds another type (written by something
-- else into lull's namespace): failing half-way would leave the message
-- marked seen but not stored, and its retry dropped as a duplicate.
for i, want in ipairs({'list', 'hash', 'zset', 'zset', 'hash'}) do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want .. ': nothing appended')
  end
end
-- Likewise for the counters this script increments after the first write.
-- meta is read once: its deadline and reason serve below as they are now.
local m = redis.call('HMGET', meta_key, 'gen', 'seq', 'bytes', 'deadline', 'reason')
local counters = {{meta_key, 'gen', m[1]}, {meta_key, 'seq', m[2]}, {meta_key, 'bytes', m[3]},
  {stats_key, 'appended', redis.call('HGET', stats_key, 'appended')}}
for _, c in ipairs(counters) do
  if c[3] and not string.match(c[3], '^%-?%d+$') then
    return redis.error_reply('ERR ' .. c[1] .. ' field ' .. c[2] .. ' is not an integer: nothing appended')
  end
end

local now = clock(ARGV[9])
local at = now
local received = tonumber(ARGV[11])
if received and received < now then
  at = math.max(received, now - math.floor(quiet / 2))
end

if redis.call('ZSCORE', seen_key, id) then
  redis.call('HINCRBY', stats_key, 'duplicates', 1)
  return {0, tonumber(m[1]) or 0, redis.call('LLEN', buf_key), tonumber(m[4]) or -1, now, 0}
end
redis.call('ZADD', seen_key, now, id)
redis.call('ZREMRANGEBYSCORE', seen_key, '-inf', now - dedupe)
redis.call('PEXPIRE', seen_key, dedupe)

-- A new conversation (or one whose state expired) starts its generation at the
-- clock, so a batch id is never reused for a different batch.
redis.call('HSETNX', meta_key, 'gen', now)
local gen = redis.call('HINCRBY', meta_key, 'gen', 1)
redis.call('HINCRBY', meta_key, 'seq', 1)
-- A pause whose time ran out ends here if no flush ended it yet: what it
-- kept is marked for the batch that ends it.
local pause = redis.call('HMGET', meta_key, 'paused', 'paused_until')
if pause[1] and pause[2] and tonumber(pause[2]) <= now then
  redis.call('HDEL', meta_key, 'paused', 'paused_until')
  if redis.call('LLEN', buf_key) > 0 then
    redis.call('HSET', meta_key, 'was_paused', 1)
  end
  pause = {false, false}
end
if ARGV[12] == 'cancel' then
  local dropped = redis.call('LLEN', buf_key) + 1
  redis.call('DEL', buf_key)
  redis.call('HDEL', meta_key, 'first_at', 'deadline', 'reason', 'bytes', 'was_paused', 'replaces')
  redis.call('ZREM', due_key, conv)
  redis.call('HINCRBY', stats_key, 'cancelled', dropped)
  redis.call('PEXPIRE', meta_key, ttl)
  return {1, gen, 0, -1, now, dropped}
end
local count = redis.call('RPUSH', buf_key, msg)
redis.call('HINCRBY', stats_key, 'appended', 1)
redis.call('HINCRBY', meta_key, 'bytes', #msg)
local last = tonumber(redis.call('HGET', meta_key, 'last_at'))
if last and last > at and last <= now then
  at = last
end
if count == 1 then
  redis.call('HSET', meta_key, 'first_at', at)
end
local first = tonumber(redis.call('HGET', meta_key, 'first_at')) or at

local min_window = tonumber(ARGV[13])
if min_window then
  local k = tonumber(ARGV[14]) or 3
  local gap = tonumber(redis.call('HGET', meta_key, 'gap'))
  if count > 1 and last then
    local g = math.max(at - last, 0)
    if gap then
      gap = math.floor(0.3 * g + 0.7 * gap + 0.5)
    else
      gap = g
    end
    redis.call('HSET', meta_key, 'gap', gap)
  end
  if gap then
    quiet = math.min(math.max(math.floor(k * gap), min_window), quiet)
  end
  -- The receipt is taken back by at most half of the window in force.
  at = math.max(at, now - math.floor(quiet / 2))
end

local deadline, reason = at + quiet, 'quiet'
if max_wait > 0 and first + max_wait < deadline then
  deadline, reason = first + max_wait, 'max_wait'
end
-- A buffer already due at once (a full buffer's rest, a flush word, a
-- manual flush, a resume) stays due at once: the message joins that batch
-- rather than restart the quiet window (nor does typing, schedule.lua).
local kept = false
local prev_deadline = tonumber(m[4])
if count > 1 and not pause[1] and prev_deadline and prev_deadline <= now and due_at_once[m[5]] then
  deadline, reason, kept = prev_deadline, m[5], true
end
if count >= max_msgs then
  deadline, reason, kept = now, 'max_messages', false
end
if ARGV[10] == '1' then
  deadline, reason, kept = now, 'immediate', false
end
redis.call('HSET', meta_key, 'last_at', at, 'deadline', deadline, 'reason', reason)
local keep = ttl
if kept then
  -- Never earlier than it is: a batch in flight had it put off to its
  -- lease's end (flush.lua), and this message changes nothing of that.
  redis.call('ZADD', due_key, 'GT', deadline, conv)
elseif not pause[1] then
  redis.call('ZADD', due_key, deadline, conv)
elseif pause[2] then
  local pause_end = tonumber(pause[2])
  redis.call('ZADD', due_key, math.max(deadline, pause_end), conv)
  keep = math.max(ttl, pause_end - now + ttl)
end
redis.call('PEXPIRE', buf_key, keep)
redis.call('PEXPIRE', meta_key, keep)
return {1, gen, count, deadline, now, 0}
