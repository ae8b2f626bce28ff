-- KEYS: session, index, revoked. ARGV: session id, presented hash, successor hash, ttl (ms),
-- grace (ms), channel, remember (ms).
-- Returns {1, ttl} rotated, {2, ttl} replayed within grace, {0} missing, {3} reused.
-- Every refresh runs this: the hot path (rotated) calls nothing it does not need, and the
-- helpers of the theft path are defined in that branch only.
local s = redis.call('HMGET', KEYS[1], 'c', 'p', 'r', 'x')
if not s[1] then
  return {0}
end
--@include now
if s[1] == ARGV[2] then
  -- Idle timeout slides with each rotation; the absolute lifetime never moves.
  local ttl = math.max(1, math.min(tonumber(ARGV[4]), tonumber(s[4]) - now))
  redis.call('HSET', KEYS[1], 'c', ARGV[3], 'p', ARGV[2], 'r', now, 'u', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
  -- The hot path only stretches the index's life; creation and revocation prune it.
  if redis.call('PTTL', KEYS[2]) < ttl then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  return {1, ttl}
end
local grace = tonumber(ARGV[5])
if s[2] == ARGV[2] and grace > 0 and now - tonumber(s[3]) <= grace then
  return {2, redis.call('PTTL', KEYS[1])}
end
-- A token rotated before the grace window came back: treat it as stolen.
--@include reindex
--@include announce
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
reindex(KEYS[2], now)
announce(KEYS[3], ARGV[6], {ARGV[1]}, now, tonumber(ARGV[7]))
return {3}
