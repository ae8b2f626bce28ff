-- A user's index holds each session twice: its id scored by when it expires, and "." and
-- its id scored by minus when it started (so one key serves both orders). Drop up to a
-- hundred sessions that have expired, both entries each: bounded, however many there are;
-- what is left is dropped by later calls, and listing skips what it finds gone.
local function prune(index, now)
  local expired = redis.call('ZRANGEBYSCORE', index, 0, now, 'LIMIT', 0, 100)
  if #expired == 0 then
    return
  end
  local starts = {}
  for n, id in ipairs(expired) do
    starts[n] = '.' .. id
  end
  redis.call('ZREM', index, unpack(expired))
  redis.call('ZREM', index, unpack(starts))
end
