-- After a new refresh token: the session lives another idle timeout (`ttlMs`), never past
-- its absolute end (`start + maxTtlMs`), and so does its entry in the user's index, whose
-- own life is only stretched (creation and listing prune it). Returns the new TTL (ms).
local function extend(session, index, sessionId, start, ttlMs, maxTtlMs, now)
  local ttl = math.max(1, math.min(ttlMs, start + maxTtlMs - now))
  redis.call('PEXPIRE', session, ttl)
  redis.call('ZADD', index, now + ttl, sessionId)
  if redis.call('PTTL', index) < ttl then
    redis.call('PEXPIRE', index, ttl)
  end
  return ttl
end
