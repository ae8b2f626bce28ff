-- KEYS: index. ARGV: session key prefix.
-- Returns one {id, created, last used, expires, user agent, ip, label} per live session.
--@include now
--@include reindex
reindex(KEYS[1], now)
local sessions = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. id
  local s = redis.call('HMGET', key, 't', 'u', 'a', 'b', 'i', 'l')
  local ttl = redis.call('PTTL', key)
  if s[1] and ttl > 0 then
    table.insert(sessions, {id, s[1], s[2], tostring(now + ttl), (s[3] or '') .. (s[4] or ''), s[5] or '', s[6] or ''})
  end
end
return sessions
