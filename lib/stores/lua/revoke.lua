-- KEYS: session, index. ARGV: session id. Returns 1 if the session existed.
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
reindex(KEYS[2], now_ms())
return existed
