-- Steps a session up after the user proved who they are again (RFC 9470): the session's
-- refresh token is replaced by a new one, and the one it replaces is superseded with no
-- grace window, so that presenting it afterwards is reuse (a grace replay must never hand
-- the stepped-up tokens to whoever holds the old one). Same session, same entry in the
-- user's list, one round trip.
local session = KEYS[1]
local index = KEYS[2]
local sessionId = ARGV[1]
local successor = ARGV[2]         -- the new token's hash: random, not derived from the old one
local ttlMs = tonumber(ARGV[3])
local maxTtlMs = tonumber(ARGV[4])
local deadline = ARGV[5]          -- ms, Redis clock: past it the request was answered 503; '' for none
local writeId = ARGV[6]           -- unique to this request ('' for none), kept as the session's last write
local browserMaxTtlMs = tonumber(ARGV[7]) -- the absolute lifetime instead, of a session not remembered
-- Returns {1, ttl, start, remembered (1 or 0)} stepped up, {0} missing, {7} too late (changes nothing).
-- Delivered twice (a client library resends a command whose answer a broken connection
-- lost), it writes the same successor again and answers as it first did: no check needed.
local s = redis.call('HMGET', session, 'c', 'e')
local start = s[1] and redis.call('ZSCORE', index, '.' .. sessionId)
if not start then
  return {0}
end
start = -tonumber(start)
--@include now
if deadline ~= '' and now > tonumber(deadline) then
  return {7}
end
redis.call('HSET', session, 'c', successor, 'r', now, 'w', writeId)
-- No previous token: the one replaced, and one still within a rotation's grace, are reuse.
redis.call('HDEL', session, 'p')
--@include extend
local remembered, lifetime = 1, maxTtlMs
if s[2] then
  remembered, lifetime = 0, browserMaxTtlMs
end
return {1, extend(session, index, sessionId, start, ttlMs, lifetime, now), start, remembered}
