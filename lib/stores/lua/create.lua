-- KEYS: session, index. ARGV: session id, token hash, ttl (ms), max lifetime (ms),
-- user agent (first part), user agent (second part), ip, label ('' for none).
--@include now
--@include reindex
local max = tonumber(ARGV[4])
local ttl = math.min(tonumber(ARGV[3]), max)
local fields = {'c', ARGV[2], 't', now, 'u', now, 'x', now + max}
local optional = {'a', 'b', 'i', 'l'}
for n = 1, 4 do
  if ARGV[4 + n] ~= '' then
    table.insert(fields, optional[n])
    table.insert(fields, ARGV[4 + n])
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
reindex(KEYS[2], now)
return ttl
