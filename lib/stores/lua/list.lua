-- KEYS[1] index. ARGV[1] session key prefix, ARGV[2] the page's cursor: the start of the
-- last session of the previous page ('' for the first page), ARGV[3] the page size.
-- Returns {next cursor ('' after the last page), {id, start, last used, expires, user
-- agent, ip, label}, ...}: newest first. A page reads at most ARGV[3] sessions, so it may
-- hold fewer (some had just ended) while more follow.
--@include now
--@include prune
prune(KEYS[1], now)
local from = '-inf'
if ARGV[2] ~= '' then
  from = '(' .. -tonumber(ARGV[2])
end
local limit = tonumber(ARGV[3])
-- One more than the page: whether more follow.
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], from, '(0', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local page = {''}
local last
for n = 1, math.min(#entries, 2 * limit), 2 do
  local id = string.sub(entries[n], 2)
  local key = ARGV[1] .. id
  local start = -tonumber(entries[n + 1])
  last = start
  local s = redis.call('HMGET', key, 'r', 'a', 'b', 'i', 'l')
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    -- Last used: the last rotation, or else the start.
    table.insert(page, {id, tostring(start), s[1] or tostring(start), tostring(now + ttl), (s[2] or '') .. (s[3] or ''), s[4] or '', s[5] or ''})
  else
    redis.call('ZREM', KEYS[1], id, entries[n])
  end
end
if #entries > 2 * limit then
  page[1] = tostring(last)
end
return page
