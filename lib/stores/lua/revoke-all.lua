-- KEYS: index, guard session, revoked. ARGV: session key prefix, '1' to require the guard,
-- a session id to spare ('' for none), channel, remember (ms).
-- Returns the revoked ids, or -1 if the guard is gone.
-- Session keys are built here from the index: they share the index's hash tag, so they
-- live in the same Cluster slot, and reading the index first would cost a round trip.
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
--@include now
--@include reindex
--@include announce
local revoked = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if id ~= ARGV[3] then
    if redis.call('DEL', ARGV[1] .. id) == 1 then
      table.insert(revoked, id)
    end
    redis.call('ZREM', KEYS[1], id)
  end
end
reindex(KEYS[1], now)
announce(KEYS[3], ARGV[4], revoked, now, tonumber(ARGV[5]))
return revoked
