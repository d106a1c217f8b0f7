-- pause.lua: pause or resume a conversation (a human took it over). While
-- paused, messages are still taken and kept, and nothing is claimed; when the
-- pause ends (resumed, or its time ran out) what was kept flushes as one batch
-- marked paused.
--
-- KEYS[1] meta  <ns>:{sNN}:meta:<key>  HASH paused, paused_until, was_paused, deadline, reason,
--                                       control_at (when the pause or resume in force happened)
-- KEYS[2] buf   <ns>:{sNN}:buf:<key>   LIST buffered message JSON
-- KEYS[3] due   <ns>:{sNN}:due         ZSET conversation key -> flush deadline (Unix ms)
--
-- ARGV[1] conversation key
-- ARGV[2] "pause" or "resume"
-- ARGV[3] pause: how long, ms ("" = until resumed)
-- ARGV[4] safety TTL of buf and meta, ms: refreshed, and a pause for a while
--         keeps them at least that long after its end, so what it keeps
--         never expires before it flushes
-- ARGV[5] now, Unix ms; "" = Redis TIME (only tests pass a value)
-- ARGV[6] when the pause or resume happened, Unix ms (a webhook's receipt by
--         the api); "" = now, and always applied (an operator's call). One
--         older than the pause or resume in force (control_at) changes
--         nothing: a command that lands late (sent by a worker cut off from
--         Redis, after another one took over) does not undo a later one
--
-- Returns {changed, until, deadline, now, stale}:
--   changed   1 = the state changed; 0 = resume of a conversation not paused,
--             or stale
--   until     pause: its end (Unix ms), -1 = until resumed; resume: -1
--   deadline  when what is buffered is due now (Unix ms), -1 = not scheduled
--   now       the clock the script used (Unix ms)
--   stale     1 = older than the pause or resume in force: nothing changed
local meta_key, buf_key, due_key = KEYS[1], KEYS[2], KEYS[3]
local conv, mode, ttl = ARGV[1], ARGV[2], tonumber(ARGV[4])
local now = clock(ARGV[5])
if mode ~= 'pause' and mode ~= 'resume' then
  return redis.error_reply('pause.lua: mode must be pause or resume')
end
-- An api clock ahead of Redis's counts as now, as in append.lua.
local at = tonumber(ARGV[6])
if at then
  at = math.min(at, now)
end
local last = tonumber(redis.call('HGET', meta_key, 'control_at'))
if at and last and at < last then
  return {0, -1, -1, now, 1}
end
-- Recorded where lull holds the conversation (a resume of one it holds
-- nothing of makes no key); a pause sets the meta's expiry below.
if mode == 'pause' or redis.call('EXISTS', meta_key) == 1 then
  redis.call('HSET', meta_key, 'control_at', math.max(at or now, last or 0))
end
local buffered = redis.call('LLEN', buf_key) > 0

if mode == 'pause' then
  local d = tonumber(ARGV[3])
  local pause_end = -1
  redis.call('HSET', meta_key, 'paused', 1)
  if d then
    pause_end = now + d
    redis.call('HSET', meta_key, 'paused_until', pause_end)
  else
    redis.call('HDEL', meta_key, 'paused_until')
  end
  redis.call('HSETNX', meta_key, 'gen', now)
  local keep = ttl
  if pause_end > 0 then
    keep = pause_end - now + ttl
  end
  redis.call('PEXPIRE', meta_key, keep)
  if buffered then
    redis.call('PEXPIRE', buf_key, keep)
  end
  if not buffered then
    return {1, pause_end, -1, now, 0}
  end
  if pause_end < 0 then
    redis.call('ZREM', due_key, conv)
    return {1, pause_end, -1, now, 0}
  end
  local deadline = math.max(tonumber(redis.call('HGET', meta_key, 'deadline')) or now, pause_end)
  redis.call('ZADD', due_key, deadline, conv)
  return {1, pause_end, deadline, now, 0}
end

if redis.call('HEXISTS', meta_key, 'paused') == 0 then
  return {0, -1, -1, now, 0}
end
redis.call('HDEL', meta_key, 'paused', 'paused_until')
if not buffered then
  return {1, -1, -1, now, 0}
end
redis.call('HSET', meta_key, 'was_paused', 1, 'deadline', now, 'reason', 'resumed')
redis.call('ZADD', due_key, now, conv)
return {1, -1, now, now, 0}
