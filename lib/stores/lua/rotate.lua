-- KEYS[1] session, KEYS[2] index, KEYS[3] revoked.
-- ARGV[1] session id, ARGV[2] presented hash, ARGV[3] successor hash, ARGV[4] ttl (ms),
-- ARGV[5] grace (ms), ARGV[6] channel, ARGV[7] remember (ms), ARGV[8] agent tag ('' when
-- replays are not checked by agent), ARGV[9] the session's maximum lifetime (ms).
-- Returns {1, ttl, start} rotated, {2, ttl, start} replayed within grace, {0} missing,
-- {3} reused.
-- Every refresh runs this: the hot path (rotated) calls nothing it does not need, and the
-- helpers of the theft path are defined in that branch only.
local s = redis.call('HMGET', KEYS[1], 'c', 'p', 'r', 'g')
-- A session is live while its hash and its start in the index both are: revoking every
-- session of a user drops the index and leaves the hashes to expire.
local start = s[1] and redis.call('ZSCORE', KEYS[2], '.' .. ARGV[1])
if not start then
  if s[1] then
    redis.call('DEL', KEYS[1])
  end
  return {0}
end
start = -tonumber(start)
--@include now
if s[1] == ARGV[2] then
  -- Idle timeout slides with each rotation; the absolute lifetime never moves.
  local ttl = math.max(1, math.min(tonumber(ARGV[4]), start + tonumber(ARGV[9]) - now))
  if ARGV[8] == '' then
    redis.call('HSET', KEYS[1], 'c', ARGV[3], 'p', ARGV[2], 'r', now)
  else
    redis.call('HSET', KEYS[1], 'c', ARGV[3], 'p', ARGV[2], 'r', now, 'g', ARGV[8])
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
  -- The hot path only stretches the index's life; creation and listing prune it.
  if redis.call('PTTL', KEYS[2]) < ttl then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  return {1, ttl, start}
end
--@include judge
if judge(s, ARGV[2], tonumber(ARGV[5]), ARGV[8], now) == 'replay' then
  return {2, redis.call('PTTL', KEYS[1]), start}
end
-- A token rotated before the grace window came back: treat it as stolen.
--@include announce
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1], '.' .. ARGV[1])
announce(KEYS[3], ARGV[6], {ARGV[1]}, now, tonumber(ARGV[7]))
return {3}
