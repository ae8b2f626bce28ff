-- Prepended to every script. Time comes from the Redis server so that all app
-- instances agree on it, whatever their own clocks say.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The user's index holds session ids scored by expiry. Drop the expired ones and
-- let the index expire with its longest-lived session, so no key outlives its use.
local function reindex(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', index, last[2])
  end
end

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
