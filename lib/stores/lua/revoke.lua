-- KEYS: session, index, revoked. ARGV: session id, channel, remember (ms).
-- Returns 1 if the session existed.
local existed = redis.call('DEL', KEYS[1])
--@include now
--@include reindex
--@include announce
redis.call('ZREM', KEYS[2], ARGV[1])
reindex(KEYS[2], now)
if existed == 1 then
  announce(KEYS[3], ARGV[2], {ARGV[1]}, now, tonumber(ARGV[3]))
end
return existed
