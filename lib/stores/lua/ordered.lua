-- The user's latest stamp (a revocation of every session), "u:<time>:<spared>:<user id>":
-- its time and its value, or nil.
local function stamp_time(stamp)
  local value = redis.call('GET', stamp)
  if value then
    return tonumber(string.match(value, '^u:(%d+):')), value
  end
  return nil, nil
end
-- The earliest time a new start or stamp may take: now, but after the user's newest
-- session and after the latest stamp (`at`, or nil), whatever the clock did meanwhile (a
-- failover to a server whose clock is behind). So starts are unique and ordered per user,
-- every stamp falls after every start so far, and every start after the latest stamp.
local function after_all(index, at, now)
  local floor = math.max(now, at or 0)
  local newest = redis.call('ZRANGEBYSCORE', index, '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
  if newest[2] then
    floor = math.max(floor, 1 - tonumber(newest[2]))
  end
  return floor
end
