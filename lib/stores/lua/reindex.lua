-- The user's index holds session ids scored by expiry. Drop the expired ones and
-- let the index expire with its longest-lived session, so no key outlives its use.
local function reindex(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', index, last[2])
  end
end
