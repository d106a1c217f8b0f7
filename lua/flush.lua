-- flush.lua: claim a conversation's buffer as its next batch, if its deadline
-- has passed and no earlier batch of the conversation is still in flight.
-- Exactly one caller wins. The claim counts the batch's first delivery attempt.
--
-- The deadline check is what makes the claim safe: a message that arrives
-- after the scheduler found the conversation due moves the deadline into the
-- future (not_due), unless the burst has reached its max wait or max messages
-- or was due at once already (a flush word, a manual flush, a resume, a
-- slice's rest: append.lua keeps those due), and then the new message rightly
-- belongs to the batch. So no generation is compared here.
--
-- KEYS[1] due       <ns>:{sNN}:due           ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[2] meta      <ns>:{sNN}:meta:<key>    HASH gen, first_at, last_at, deadline, reason, bytes (of buf),
--                                             paused, paused_until, was_paused, replaces, seq, claimed
-- KEYS[3] buf       <ns>:{sNN}:buf:<key>     LIST buffered message JSON
-- KEYS[4] batch     <ns>:{sNN}:batch:<key>   HASH the claimed batch
-- KEYS[5] inflight  <ns>:{sNN}:inflight      ZSET conversation key -> lease expiry (Unix ms)
-- KEYS[6] stats     <ns>:{sNN}:stats         HASH the shard's counters: flushed, lateness_ms
--
-- ARGV[1] conversation key
-- ARGV[2] lease, ms
-- ARGV[3] owner: who claims the batch (worker id)
-- ARGV[4] now, Unix ms; "" = Redis TIME (only tests pass a value)
-- ARGV[5] max batch messages: a buffer that grew larger (while an earlier batch
--         was in flight) is claimed in slices of this size, oldest first; the
--         rest stays buffered under a new generation, due at once
-- ARGV[6] max batch bytes: a slice also ends before the message that would
--         take the sum of its messages' JSON past this many bytes (a slice
--         holds at least one message; the api refuses larger ones); "" = none
--
-- A paused conversation (pause.lua) is not claimed: it is rescheduled at the
-- end of its pause, or unscheduled while paused until resumed. The batch
-- claimed once a pause ran out (or after a resume) is marked paused. A batch
-- claimed after a discard (discard.lua) names the batches it replaces.
--
-- Returns one of
--   {1, generation, reason, flushed_at, attempt, messages, rest, deadline, paused, replaces}
--                   claimed; messages is a JSON array, attempt is 1, rest is 1
--                   when a slice left messages buffered that are due at once
--                   (else 0), deadline is the due score the claim was made for
--                   (flushed_at - deadline is the flush's lateness), paused
--                   is 1 for the batch that ends a pause (else 0), replaces
--                   is a JSON array of batch ids ("" when none)
--   {0, "gone"}     not scheduled (another scheduler flushed it)
--   {0, "not_due"}  its deadline is in the future (a message arrived meanwhile)
--   {0, "busy"}     an earlier batch is in flight; rescheduled after that batch's lease
--   {0, "empty"}    scheduled with nothing buffered; unscheduled
--   {0, "paused"}   paused: rescheduled at the pause's end, or unscheduled
local due_key, meta_key, buf_key, batch_key, inflight_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local conv, lease, owner = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local max_msgs = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
local now = clock(ARGV[4])

local deadline = tonumber(redis.call('ZSCORE', due_key, conv))
if not deadline then
  return {0, 'gone'}
end
if deadline > now then
  return {0, 'not_due'}
end
local gen = redis.call('HGET', meta_key, 'gen')
if not gen then
  -- State that lost its meta (it expired, a buffer put back by a discard):
  -- a generation from the clock, as append.lua starts one.
  redis.call('HSETNX', meta_key, 'gen', now)
  gen = redis.call('HGET', meta_key, 'gen')
end
local pause = redis.call('HMGET', meta_key, 'paused', 'paused_until')
if pause[1] then
  local pause_end = tonumber(pause[2])
  if not pause_end then
    redis.call('ZREM', due_key, conv)
    return {0, 'paused'}
  end
  if pause_end > now then
    redis.call('ZADD', due_key, pause_end, conv)
    return {0, 'paused'}
  end
  redis.call('HDEL', meta_key, 'paused', 'paused_until')
  redis.call('HSET', meta_key, 'was_paused', 1)
end
if redis.call('EXISTS', batch_key) == 1 then
  local lease_end = tonumber(redis.call('ZSCORE', inflight_key, conv)) or 0
  if lease_end <= now then
    lease_end = now + lease
  end
  redis.call('ZADD', due_key, lease_end, conv)
  return {0, 'busy'}
end

local msgs = redis.call('LRANGE', buf_key, 0, max_msgs - 1)
if #msgs == 0 then
  redis.call('ZREM', due_key, conv)
  return {0, 'empty'}
end
if max_bytes then
  local size = 0
  for i = 1, #msgs do
    size = size + #msgs[i]
    if size > max_bytes and i > 1 then
      for j = #msgs, i, -1 do
        msgs[j] = nil
      end
      break
    end
  end
end
local reason = redis.call('HGET', meta_key, 'reason') or 'quiet'
local rest = 0
if redis.call('LLEN', buf_key) > #msgs then
  -- A slice: the rest stays buffered, due at once, under a new generation
  -- so that its batch gets an id of its own.
  redis.call('LTRIM', buf_key, #msgs, -1)
  local claimed = 0
  for i = 1, #msgs do
    claimed = claimed + #msgs[i]
  end
  redis.call('HINCRBY', meta_key, 'bytes', -claimed)
  redis.call('HINCRBY', meta_key, 'gen', 1)
  local cut = 'max_messages'
  if #msgs < max_msgs then
    cut = 'max_bytes'
  end
  redis.call('HSET', meta_key, 'deadline', now, 'reason', cut, 'first_at', now)
  redis.call('ZADD', due_key, now, conv)
  reason = cut
  rest = 1
else
  redis.call('DEL', buf_key)
  redis.call('HDEL', meta_key, 'first_at', 'deadline', 'reason', 'bytes')
  redis.call('ZREM', due_key, conv)
end
local messages = '[' .. table.concat(msgs, ',') .. ']'
-- lens: each message's length, so a discard can split the array back into
-- the exact stored messages.
local lens = {}
for i = 1, #msgs do
  lens[i] = #msgs[i]
end
local extra = redis.call('HMGET', meta_key, 'was_paused', 'replaces', 'seq')
local paused, replaces = 0, extra[2] or ''
if extra[1] then
  paused = 1
end
-- The first batch takes both marks: a discarded batch's messages, back in
-- front of the buffer, are never more than one batch holds, so a slice
-- holds them all.
redis.call('HDEL', meta_key, 'was_paused', 'replaces')
redis.call('HSET', meta_key, 'claimed', gen)
redis.call('HSET', batch_key, 'key', conv, 'gen', gen, 'reason', reason, 'flushed_at', now,
  'attempt', 1, 'owner', owner, 'messages', messages, 'lens', table.concat(lens, ','),
  'paused', paused, 'replaces', replaces, 'seq', extra[3] or 0)
redis.call('ZADD', inflight_key, now + lease, conv)
redis.call('HINCRBY', stats_key, 'flushed', 1)
redis.call('HINCRBY', stats_key, 'lateness_ms', now - deadline)
return {1, tonumber(gen), reason, now, 1, messages, rest, deadline, paused, replaces}
