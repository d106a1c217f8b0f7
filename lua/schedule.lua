-- schedule.lua: move a buffered conversation's deadline: later while the user
-- is typing (still capped by max wait), or to now for a manual flush.
--
-- KEYS[1] buf   <ns>:{sNN}:buf:<key>   LIST buffered message JSON
-- KEYS[2] meta  <ns>:{sNN}:meta:<key>  HASH gen, first_at, last_at, deadline, reason
-- KEYS[3] due   <ns>:{sNN}:due         ZSET conversation key -> flush deadline (Unix ms)
--
-- ARGV[1] conversation key
-- ARGV[2] "typing": deadline = max(deadline, min(now + quiet, first_at + max wait));
--         "manual": deadline = now
-- ARGV[3] quiet window, ms
-- ARGV[4] max wait, ms (0 = no cap)
-- ARGV[5] now, Unix ms; "" = Redis TIME (only tests pass a value)
--
-- Returns {moved, deadline, now}:
--   moved     1 = the deadline changed; 0 = nothing buffered, or nothing to change
--   deadline  the deadline in force (Unix ms; -1 when nothing is buffered)
--   now       the clock the script used (Unix ms)
local buf_key, meta_key, due_key = KEYS[1], KEYS[2], KEYS[3]
local conv, mode, quiet, max_wait = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = clock(ARGV[5])

if redis.call('LLEN', buf_key) == 0 then
  return {0, -1, now}
end
local m = redis.call('HMGET', meta_key, 'deadline', 'reason', 'first_at')
local deadline, reason, first = tonumber(m[1]) or now, m[2], tonumber(m[3]) or now

if mode == 'manual' then
  deadline, reason = now, 'manual'
else
  if due_at_once[reason] then
    return {0, deadline, now}
  end
  local typed, why = now + quiet, 'quiet'
  if max_wait > 0 and first + max_wait < typed then
    typed, why = first + max_wait, 'max_wait'
  end
  if typed <= deadline then
    return {0, deadline, now}
  end
  deadline, reason = typed, why
end
redis.call('HSET', meta_key, 'deadline', deadline, 'reason', reason)
redis.call('ZADD', due_key, deadline, conv)
return {1, deadline, now}
