-- KEYS[1] index, KEYS[2] guard session, KEYS[3] spared session, KEYS[4] stamp, KEYS[5] revoked.
-- ARGV[1] user id, ARGV[2] guard session id ('' for no guard), ARGV[3] spared session id
-- ('' for none), ARGV[4] channel, ARGV[5] remember (ms), ARGV[6] the presented refresh
-- token's hash ('' for none), ARGV[7] grace (ms), ARGV[8] agent tag ('' for none).
-- Returns {the stamp's time, the spared session id ('' when none was live)}: every session
-- that started before that time is over but the spared one; -1 if the guard session is not
-- live; -2 if the presented token was superseded (reuse: the guard session alone is revoked).
-- One stamp, whatever the number of sessions: the index is dropped at once (UNLINK frees a
-- large one in the background), the session hashes expire on their own, and every reader
-- takes a session for live only while its start is in the index.
--@include now
--@include announce
local function live(id)
  return redis.call('ZSCORE', KEYS[1], '.' .. id)
end
if ARGV[2] ~= '' then
  if not (live(ARGV[2]) and redis.call('EXISTS', KEYS[2]) == 1) then
    return -1
  end
  if ARGV[6] ~= '' then
    --@include judge
    if judge(redis.call('HMGET', KEYS[2], 'c', 'p', 'r', 'g'), ARGV[6], tonumber(ARGV[7]), ARGV[8], now) == 'superseded' then
      redis.call('DEL', KEYS[2])
      redis.call('ZREM', KEYS[1], ARGV[2], '.' .. ARGV[2])
      announce(KEYS[5], ARGV[4], {ARGV[2]}, now, tonumber(ARGV[5]))
      return -2
    end
  end
end
-- After every session that started so far and the previous stamp, whatever the clock did
-- meanwhile (a failover to a server whose clock is behind).
local at = now
local newest = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
if newest[2] then
  at = math.max(at, 1 - tonumber(newest[2]))
end
local previous = redis.call('GET', KEYS[4])
if previous then
  at = math.max(at, tonumber(string.match(previous, '^u:(%d+):')))
end
local spared = ''
local kept
if ARGV[3] ~= '' then
  local started = live(ARGV[3])
  if started and redis.call('EXISTS', KEYS[3]) == 1 then
    spared = ARGV[3]
    kept = {redis.call('ZSCORE', KEYS[1], spared), started, redis.call('PTTL', KEYS[3])}
  end
end
redis.call('UNLINK', KEYS[1])
if kept then
  redis.call('ZADD', KEYS[1], kept[1], spared, kept[2], '.' .. spared)
  redis.call('PEXPIRE', KEYS[1], kept[3])
end
-- The stamp: "u:<at>:<spared>:<user id>", remembered and announced like a revoked session,
-- and kept under the user's tag, where logins check it and the next stamp replaces it.
local remember = tonumber(ARGV[5])
local member = 'u:' .. at .. ':' .. spared .. ':' .. ARGV[1]
if previous then
  redis.call('ZREM', KEYS[5], previous)
end
redis.call('SET', KEYS[4], member, 'PX', at + remember - now)
redis.call('ZADD', KEYS[5], at + remember, member)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
if redis.call('PTTL', KEYS[5]) < remember then
  redis.call('PEXPIRE', KEYS[5], remember)
end
redis.call('PUBLISH', ARGV[4], (at + remember) .. ' ' .. member)
return {at, spared}
