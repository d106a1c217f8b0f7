-- ready.lua: the members of a schedule whose time has come, and when the next one is due.
-- Used for both the due set (deadlines) and the inflight set (lease expiries).
--
-- KEYS[1] schedule  <ns>:{sNN}:due or <ns>:{sNN}:inflight   ZSET member -> Unix ms
--
-- ARGV[1] limit: at most this many members
-- ARGV[2] now, Unix ms; "" = Redis TIME (only tests pass a value)
--
-- Returns {now, next, member1, score1, member2, score2, ...}:
--   now     the clock the script used (Unix ms)
--   next    the earliest score later than now (Unix ms), -1 when none
--   members with score <= now, earliest first, at most limit of them
local schedule_key = KEYS[1]
local limit = tonumber(ARGV[1])
local now = clock(ARGV[2])

local out = {now, -1}
local nxt = redis.call('ZRANGEBYSCORE', schedule_key, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #nxt == 2 then
  out[2] = tonumber(nxt[2])
end
local due = redis.call('ZRANGEBYSCORE', schedule_key, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  out[#out + 1] = due[i]
  out[#out + 1] = tonumber(due[i + 1])
end
return out
