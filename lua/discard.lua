-- discard.lua: a bot threw its answer to a batch away (it was stale): put the
-- batch's messages back in front of the conversation's buffer, so the next
-- batch holds them first, then the newer ones, in order, and names the
-- discarded batch in replaces. That batch flushes on the deadline of the
-- newer messages, or one quiet window from now when none are buffered.
--
-- KEYS[1] meta      <ns>:{sNN}:meta:<key>    HASH gen, committed, deadline, reason, first_at, bytes, replaces, discarded, was_paused
-- KEYS[2] buf       <ns>:{sNN}:buf:<key>     LIST buffered message JSON
-- KEYS[3] due       <ns>:{sNN}:due           ZSET conversation key -> flush deadline (Unix ms)
-- KEYS[4] batch     <ns>:{sNN}:batch:<key>   HASH the batch in flight
-- KEYS[5] inflight  <ns>:{sNN}:inflight      ZSET conversation key -> lease expiry (Unix ms)
-- KEYS[6] last      <ns>:{sNN}:last:<key>    HASH the last delivered batch (commit.lua)
--
-- ARGV[1] conversation key
-- ARGV[2] generation of the batch
-- ARGV[3] "delivered": the batch was delivered (the bot's discard call); it
--         must be the conversation's last delivered batch, still kept, with
--         no later batch in flight. "held": the batch is in flight and held
--         by ARGV[4] (its receiver answered 409 Conflict)
-- ARGV[4] owner holding the batch (mode "held")
-- ARGV[5] batch id (KEYS' conversation and ARGV[2])
-- ARGV[6] quiet window, ms
-- ARGV[7] now, Unix ms; "" = Redis TIME (only tests pass a value)
-- ARGV[8] safety TTL of buf and meta, ms (as append.lua sets it)
--
-- The conversation's generation moves on (as a new message would), so the
-- batch that holds the messages again has an id of its own.
--
-- Returns {1, messages, deadline, now} when discarded (deadline: when the
-- next batch is due, Unix ms), or {0, why}: "unknown" (lull holds nothing of
-- the conversation), "in_flight" (a later batch is in flight),
-- "not_latest" (not the last delivered batch: a later one was claimed, or
-- it was already discarded), "gone" (no longer kept, or not held by the
-- caller).
local meta_key, buf_key, due_key, batch_key, inflight_key, last_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local conv, gen, mode, owner, batch_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local quiet, ttl = tonumber(ARGV[6]), tonumber(ARGV[8])
local now = clock(ARGV[7])

local src
if mode == 'delivered' then
  if redis.call('EXISTS', batch_key) == 1 then
    return {0, 'in_flight'}
  end
  local m = redis.call('HMGET', meta_key, 'committed', 'discarded', 'claimed', 'gen')
  if not m[4] then
    return {0, 'unknown'}
  end
  if m[1] ~= gen or m[2] == gen or (m[3] and m[3] ~= gen) then
    return {0, 'not_latest'}
  end
  if redis.call('HGET', last_key, 'gen') ~= gen then
    return {0, 'gone'}
  end
  src = last_key
elseif mode == 'held' then
  local held = redis.call('HMGET', batch_key, 'gen', 'owner')
  if held[1] ~= gen or held[2] ~= owner then
    return {0, 'gone'}
  end
  src = batch_key
else
  return redis.error_reply('discard.lua: mode must be delivered or held')
end

local b = redis.call('HMGET', src, 'messages', 'lens', 'replaces', 'paused')
local messages, lens = b[1] or '[]', b[2] or ''
local parts, pos, size = {}, 2, 0
for len in string.gmatch(lens, '%d+') do
  local n = tonumber(len)
  parts[#parts + 1] = string.sub(messages, pos, pos + n - 1)
  pos = pos + n + 1
  size = size + n
end
if lens == '' and messages ~= '[]' then
  -- A batch claimed before lens was recorded: split it by decoding (the
  -- messages keep their content; their keys' order may change).
  for _, m in ipairs(cjson.decode(messages)) do
    parts[#parts + 1] = cjson.encode(m)
    size = size + #parts[#parts]
  end
elseif pos ~= #messages + 1 and not (#parts == 0 and messages == '[]') then
  return redis.error_reply('discard.lua: the batch\'s message lengths do not match its messages')
end

-- replaces: what the conversation already owes, what the batch replaced
-- itself, and the batch.
local replaces, seen = {}, {}
for _, list in ipairs({redis.call('HGET', meta_key, 'replaces') or '', b[3] or ''}) do
  if list ~= '' then
    for _, id in ipairs(cjson.decode(list)) do
      if not seen[id] then
        replaces[#replaces + 1], seen[id] = id, true
      end
    end
  end
end
if not seen[batch_id] then
  replaces[#replaces + 1] = batch_id
end

local newer = redis.call('LLEN', buf_key)
for i = #parts, 1, -1 do
  redis.call('LPUSH', buf_key, parts[i])
end
redis.call('HINCRBY', meta_key, 'bytes', size)
redis.call('HSET', meta_key, 'replaces', cjson.encode(replaces), 'discarded', gen)
redis.call('HSETNX', meta_key, 'gen', now)
redis.call('HINCRBY', meta_key, 'gen', 1)
if b[4] == '1' then
  redis.call('HSET', meta_key, 'was_paused', 1)
end
local keep = math.max(redis.call('PTTL', meta_key), ttl)
redis.call('PEXPIRE', buf_key, keep)
redis.call('PEXPIRE', meta_key, keep)

local deadline = tonumber(redis.call('HGET', meta_key, 'deadline'))
if newer == 0 or not deadline then
  deadline = now + quiet
  redis.call('HSET', meta_key, 'deadline', deadline, 'reason', 'quiet', 'first_at', now)
end
redis.call('DEL', src)
if mode == 'held' then
  redis.call('ZREM', inflight_key, conv)
end
local pause = redis.call('HMGET', meta_key, 'paused', 'paused_until')
if not pause[1] then
  redis.call('ZADD', due_key, deadline, conv)
elseif pause[2] then
  redis.call('ZADD', due_key, math.max(deadline, tonumber(pause[2])), conv)
end
return {1, #parts, deadline, now}
