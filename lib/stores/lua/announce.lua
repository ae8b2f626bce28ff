-- Remember revoked sessions for as long as their access tokens may live, and tell every
-- app instance at once: "<until ms> <session id> <session id> ...".
local function announce(revoked, channel, ids, now, remember)
  if #ids == 0 then
    return
  end
  local expires = now + remember
  for _, id in ipairs(ids) do
    redis.call('ZADD', revoked, expires, id)
  end
  redis.call('ZREMRANGEBYSCORE', revoked, '-inf', now)
  if redis.call('PTTL', revoked) < remember then
    redis.call('PEXPIRE', revoked, remember)
  end
  redis.call('PUBLISH', channel, expires .. ' ' .. table.concat(ids, ' '))
end
