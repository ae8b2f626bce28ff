-- Records a new session and, beyond the cap, ends the user's sessions nearest their end.
local session = KEYS[1]
local index = KEYS[2]
local stamp = KEYS[3]             -- the user's latest revocation of every session
local revoked = KEYS[4]
local sessionId = ARGV[1]
local tokenHash = ARGV[2]
local ttlMs = tonumber(ARGV[3])
local maxTtlMs = tonumber(ARGV[4])
-- ARGV[5] to ARGV[9]: user agent (first part), user agent (second part), ip, label and
-- agent tag, each '' for none.
local checked = tonumber(ARGV[10]) -- when the credentials were checked (ms; '' for no check)
local maxSessions = tonumber(ARGV[11])
local sessionPrefix = ARGV[12]
local channel = ARGV[13]
local remember = tonumber(ARGV[14])
local boundKey = ARGV[15]         -- the DPoP key's thumbprint ('' for none)
local deadline = ARGV[16]         -- ms, Redis clock ('' for none)
local browserSession = ARGV[17]   -- '1': not remembered, kept for the list and for step-up; '' remembered
-- Returns {ttl, start, ended id, ...}, or {-1} when a revocation of every session of the
-- user came after the credentials were checked (a login racing a password change), {-2}
-- too late.
--@include now
-- Past its deadline its request was answered 503: change nothing (see rotate.lua).
if deadline ~= '' and now > tonumber(deadline) then
  return {-2}
end
--@include ordered
local at = stamp_time(stamp)
if at and checked and at > checked then
  return {-1}
end
local start = after_all(index, at, now)
local ttl = math.min(ttlMs, maxTtlMs)
-- The absolute end is the start plus the maximum lifetime, and the last use the start
-- until a rotation records one: neither is stored (every byte counts, times 100,000s).
local fields = {'c', tokenHash}
local optional = {'a', 'b', 'i', 'l', 'g'}
for n = 1, 5 do
  if ARGV[4 + n] ~= '' then
    table.insert(fields, optional[n])
    table.insert(fields, ARGV[4 + n])
  end
end
if boundKey ~= '' then
  table.insert(fields, 'j')
  table.insert(fields, boundKey)
end
if browserSession ~= '' then
  table.insert(fields, 'e')
  table.insert(fields, browserSession)
end
redis.call('HSET', session, unpack(fields))
redis.call('PEXPIRE', session, ttl)
redis.call('ZADD', index, now + ttl, sessionId, -start, '.' .. sessionId)
if redis.call('PTTL', index) < ttl then
  redis.call('PEXPIRE', index, ttl)
end
--@include prune
prune(index, now)
local result = {ttl, start}
-- Beyond the cap, end the sessions nearest their end (with one idle timeout for all, the
-- least recently used), at most a hundred a login, never the new one.
-- Only live sessions count: expired ones pruning has not reached yet are not ended again.
local over = redis.call('ZCOUNT', index, '(' .. now, '+inf') - maxSessions
if over > 0 then
  local ended = {}
  local most = math.min(over, 100)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '(' .. now, '+inf', 'LIMIT', 0, most + 1)) do
    if id ~= sessionId and #ended < most then
      redis.call('DEL', sessionPrefix .. id)
      redis.call('ZREM', index, id, '.' .. id)
      table.insert(ended, id)
      table.insert(result, id)
    end
  end
  --@include announce
  announce(revoked, channel, ended, now, remember)
end
return result
