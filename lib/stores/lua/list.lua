-- One page of a user's sessions, newest first.
local index = KEYS[1]
local sessionPrefix = ARGV[1]
local cursor = ARGV[2]            -- the start of the previous page's last session ('' for the first page)
local limit = tonumber(ARGV[3])   -- the page size
-- Returns {next cursor ('' after the last page), {id, start, last used, expires, user
-- agent, ip, label, '1' when not remembered else ''}, ...}. A page reads at most `limit`
-- sessions, so it may hold fewer (some had just ended) while more follow.
--@include now
--@include prune
prune(index, now)
local from = '-inf'
if cursor ~= '' then
  from = '(' .. -tonumber(cursor)
end
-- One more than the page: whether more follow.
local entries = redis.call('ZRANGEBYSCORE', index, from, '(0', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local page = {''}
local last
for n = 1, math.min(#entries, 2 * limit), 2 do
  local id = string.sub(entries[n], 2)
  local key = sessionPrefix .. id
  local start = -tonumber(entries[n + 1])
  last = start
  local s = redis.call('HMGET', key, 'r', 'a', 'b', 'i', 'l', 'e')
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    -- Last used: the last rotation, or else the start.
    table.insert(page, {id, tostring(start), s[1] or tostring(start), tostring(now + ttl), (s[2] or '') .. (s[3] or ''), s[4] or '', s[5] or '', s[6] or ''})
  else
    redis.call('ZREM', index, id, entries[n])
  end
end
if #entries > 2 * limit then
  page[1] = tostring(last)
end
return page
