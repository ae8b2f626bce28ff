-- Moves a session to its next refresh token, or detects reuse and deletes the session.
local session = KEYS[1]
local index = KEYS[2]
local revoked = KEYS[3]
local sessionId = ARGV[1]
local presented = ARGV[2]         -- the presented token's hash
local successor = ARGV[3]         -- the successor's hash
local ttlMs = tonumber(ARGV[4])
local graceMs = tonumber(ARGV[5])
local channel = ARGV[6]
local remember = ARGV[7]          -- ms; a number only where reuse needs it
local agent = ARGV[8]             -- '' when replays are not checked by agent
local maxTtlMs = tonumber(ARGV[9])
-- Returns {1, ttl, start} rotated, {2, ttl, start} replayed within grace, {0} missing,
-- {3} reused.
-- Every refresh runs this: the hot path (rotated) calls nothing it does not need, and the
-- helpers of the theft path are defined in that branch only.
local s = redis.call('HMGET', session, 'c', 'p', 'r', 'g')
-- Live while its hash and its start in the index both are (as started.lua says), read here
-- with the fields the rotation needs anyway, in one HMGET.
local start = s[1] and redis.call('ZSCORE', index, '.' .. sessionId)
if not start then
  if s[1] then
    redis.call('DEL', session)
  end
  return {0}
end
start = -tonumber(start)
--@include now
if s[1] == presented then
  -- Idle timeout slides with each rotation; the absolute lifetime never moves.
  local ttl = math.max(1, math.min(ttlMs, start + maxTtlMs - now))
  if agent == '' then
    redis.call('HSET', session, 'c', successor, 'p', presented, 'r', now)
  else
    redis.call('HSET', session, 'c', successor, 'p', presented, 'r', now, 'g', agent)
  end
  redis.call('PEXPIRE', session, ttl)
  redis.call('ZADD', index, now + ttl, sessionId)
  -- The hot path only stretches the index's life; creation and listing prune it.
  if redis.call('PTTL', index) < ttl then
    redis.call('PEXPIRE', index, ttl)
  end
  return {1, ttl, start}
end
--@include judge
if judge(s, presented, graceMs, agent, now) == 'replay' then
  return {2, redis.call('PTTL', session), start}
end
-- A token rotated before the grace window came back: treat it as stolen.
--@include announce
redis.call('DEL', session)
redis.call('ZREM', index, sessionId, '.' .. sessionId)
announce(revoked, channel, {sessionId}, now, tonumber(remember))
return {3}
