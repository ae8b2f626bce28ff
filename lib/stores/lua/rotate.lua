-- Moves a session to its next refresh token, or detects reuse and deletes the session.
local session = KEYS[1]
local index = KEYS[2]
local revoked = KEYS[3]
local proofKey = KEYS[4]          -- remembers a DPoP proof's id (used only with a proof)
local first = KEYS[5]             -- a replay's or a reuse's outcome, kept until the deadline (with a write id)
local sessionId = ARGV[1]
local presented = ARGV[2]         -- the presented token's hash
local successor = ARGV[3]         -- the successor's hash
local ttlMs = tonumber(ARGV[4])
local graceMs = tonumber(ARGV[5])
local channel = ARGV[6]
local remember = ARGV[7]          -- ms; a number only where reuse needs it
local agent = ARGV[8]             -- '' when replays are not checked by agent
local maxTtlMs = tonumber(ARGV[9])
local proofJkt = ARGV[10]         -- the DPoP proof's key thumbprint, '' for no proof
local proofTtl = ARGV[11]         -- ms to remember the proof's id
local deadline = ARGV[12]         -- ms, Redis clock: past it the request was answered 503; '' for none
local writeId = ARGV[13]          -- unique to this request ('' for none): delivered again, it answers as it first did
-- Returns {1, ttl, start} rotated, {2, ttl, start} replayed within grace, {0} missing,
-- {3} reused, {4} a proof for an unbound session, {5} a bound session without a proof by
-- its key, {6} a proof id seen before, {7} too late. 4 to 7 change nothing.
-- Every refresh runs this: the hot path (rotated) calls nothing it does not need, and the
-- helpers of the theft path are defined in that branch only.
-- The same request delivered again (a client library resends a command whose answer a
-- broken connection lost) answers as it first did: a rotation by the write id it left in
-- the session (field w), a replay or a reuse by the outcome it kept under the write key.
local s = redis.call('HMGET', session, 'c', 'p', 'r', 'g', 'j', 'w')
-- Live while its hash and its start in the index both are (as started.lua says), read here
-- with the fields the rotation needs anyway, in one HMGET.
local start = s[1] and redis.call('ZSCORE', index, '.' .. sessionId)
if not start then
  if s[1] then
    redis.call('DEL', session)
  end
  if writeId ~= '' and redis.call('GET', first) == '3' then
    return {3}
  end
  return {0}
end
start = -tonumber(start)
--@include now
-- Past its deadline its request was answered 503: the client retries, and must find the
-- session as it left it (a replay judged now, after later rotations, would be taken for
-- theft). Every write script checks its deadline so.
if deadline ~= '' and now > tonumber(deadline) then
  return {7}
end
local current = s[1] == presented
if not current then
  if writeId ~= '' then
    if s[6] == writeId and s[2] == presented then
      return {1, redis.call('PTTL', session), start}
    end
    if redis.call('GET', first) == '2' then
      return {2, redis.call('PTTL', session), start}
    end
  end
  --@include judge
  if judge(s, presented, graceMs, agent, now) ~= 'replay' then
    -- A token rotated before the grace window came back: treat it as stolen, whatever
    -- proof came with it (a thief who refreshed first must not lock the owner out unseen).
    --@include announce
    redis.call('DEL', session)
    redis.call('ZREM', index, sessionId, '.' .. sessionId)
    announce(revoked, channel, {sessionId}, now, tonumber(remember))
    if writeId ~= '' then
      --@include resend
      redis.call('SET', first, '3', 'PX', resend_window(deadline, now))
    end
    return {3}
  end
end
-- The key, for a current token and a replay alike; a refused refresh spends nothing.
if s[5] or proofJkt ~= '' then
  if not s[5] then
    return {4}
  end
  if s[5] ~= proofJkt then
    return {5}
  end
  if not redis.call('SET', proofKey, '1', 'PX', proofTtl, 'NX') then
    return {6}
  end
end
if not current then
  if writeId ~= '' then
    --@include resend
    redis.call('SET', first, '2', 'PX', resend_window(deadline, now))
  end
  return {2, redis.call('PTTL', session), start}
end
if agent == '' then
  redis.call('HSET', session, 'c', successor, 'p', presented, 'r', now, 'w', writeId)
else
  redis.call('HSET', session, 'c', successor, 'p', presented, 'r', now, 'w', writeId, 'g', agent)
end
-- Idle timeout slides with each rotation; the absolute lifetime never moves.
--@include extend
return {1, extend(session, index, sessionId, start, ttlMs, maxTtlMs, now), start}
