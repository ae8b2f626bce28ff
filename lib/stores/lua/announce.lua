-- Forgets a revocation bucket's expired entries, at most a hundred a call (a write adds
-- fewer, so expired entries never pile up, and no call removes a mass revocation's worth
-- at once), and keeps the bucket at least as long as its newest entry.
local function forget_expired(revoked, now, remember)
  local expired = redis.call('ZRANGEBYSCORE', revoked, '-inf', now, 'LIMIT', 0, 100)
  if #expired > 0 then
    redis.call('ZREM', revoked, unpack(expired))
  end
  if redis.call('PTTL', revoked) < remember then
    redis.call('PEXPIRE', revoked, remember)
  end
end

-- Remember revoked sessions for as long as their access tokens may live, in the bucket of
-- the user's hash slot, and tell every app instance at once: "<until ms> <session id> ...".
local function announce(revoked, channel, ids, now, remember)
  if #ids == 0 then
    return
  end
  local expires = now + remember
  for _, id in ipairs(ids) do
    redis.call('ZADD', revoked, expires, id)
  end
  forget_expired(revoked, now, remember)
  redis.call('PUBLISH', channel, expires .. ' ' .. table.concat(ids, ' '))
end
