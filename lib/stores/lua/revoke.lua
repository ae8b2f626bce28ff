-- Ends one session; a superseded presented refresh token is reuse.
local session = KEYS[1]
local index = KEYS[2]
local revoked = KEYS[3]
local sessionId = ARGV[1]
local channel = ARGV[2]
local remember = tonumber(ARGV[3])
local presented = ARGV[4]         -- the presented refresh token's hash ('' when named otherwise)
local graceMs = tonumber(ARGV[5])
local agent = ARGV[6]             -- '' for none
-- Returns 1 revoked, 0 not live, 2 reused (the presented token was superseded: revoked too).
--@include started
local live = started(index, session, sessionId)
--@include now
local outcome = 0
if live then
  outcome = 1
  if presented ~= '' then
    --@include judge
    if judge(redis.call('HMGET', session, 'c', 'p', 'r', 'g'), presented, graceMs, agent, now) == 'superseded' then
      outcome = 2
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
end
return outcome
