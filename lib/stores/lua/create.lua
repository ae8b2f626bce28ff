-- KEYS: session, index. ARGV: session id, token hash, ttl (ms).
local now = now_ms()
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'c', ARGV[2], 't', now, 'u', now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
reindex(KEYS[2], now)
return 1
