-- KEYS: index, guard session. ARGV: session key prefix, '1' to require the guard.
-- Session keys are built here from the index: they share the index's hash tag, so they
-- live in the same Cluster slot, and reading the index first would cost a round trip.
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now_ms(), '+inf')
local count = 0
for _, id in ipairs(ids) do
  count = count + redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1])
return count
