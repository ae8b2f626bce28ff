-- Ends one session; a superseded presented refresh token is reuse.
local session = KEYS[1]
local index = KEYS[2]
local revoked = KEYS[3]
local first = KEYS[4]             -- this request's outcome, kept until its deadline (with a write id)
local sessionId = ARGV[1]
local channel = ARGV[2]
local remember = tonumber(ARGV[3])
local presented = ARGV[4]         -- the presented refresh token's hash ('' when named otherwise)
local graceMs = tonumber(ARGV[5])
local agent = ARGV[6]             -- '' for none
local proofJkt = ARGV[7]          -- the key thumbprint of the DPoP proof that came with it ('' for none)
local deadline = ARGV[8]          -- ms, Redis clock ('' for none)
local writeId = ARGV[9]           -- unique to this request ('' for none)
-- Returns 1 revoked, 0 not live, 2 reused (the presented token was superseded: revoked too),
-- 3 too late.
-- A bound session's own token without a proof by its key is 0 too, and changes nothing.
--@include started
local live = started(index, session, sessionId)
--@include now
-- Past its deadline its request was answered 503: change nothing (see rotate.lua).
if deadline ~= '' and now > tonumber(deadline) then
  return 3
end
if not live and writeId ~= '' then
  -- This very revocation, delivered again (a client library resends a command whose
  -- answer a broken connection lost), answers as it first did.
  local answer = redis.call('GET', first)
  if answer then
    return tonumber(answer)
  end
end
local outcome = 0
if live then
  outcome = 1
  if presented ~= '' then
    --@include judge
    local s = redis.call('HMGET', session, 'c', 'p', 'r', 'g', 'j')
    if judge(s, presented, graceMs, agent, now) == 'superseded' then
      outcome = 2
    elseif s[5] and s[5] ~= proofJkt then
      -- Reuse is decided first, whatever proof came; otherwise the token is only as good
      -- as a proof by the session's key makes it, here as on refresh.
      return 0
    end
  end
end
redis.call('DEL', session)
redis.call('ZREM', index, sessionId, '.' .. sessionId)
-- The index now lives only as long as its longest-lived session left.
local last = redis.call('ZREVRANGEBYSCORE', index, '+inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
if last[2] then
  redis.call('PEXPIREAT', index, last[2])
end
if live then
  --@include announce
  announce(revoked, channel, {sessionId}, now, remember)
  if writeId ~= '' then
    --@include resend
    redis.call('SET', first, outcome, 'PX', resend_window(deadline, now))
  end
end
return outcome
