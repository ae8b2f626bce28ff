-- KEYS[1] session, KEYS[2] index, KEYS[3] stamp, KEYS[4] revoked.
-- ARGV[1] session id, ARGV[2] token hash, ARGV[3] ttl (ms), ARGV[4] max lifetime (ms),
-- ARGV[5] user agent (first part), ARGV[6] user agent (second part), ARGV[7] ip,
-- ARGV[8] label, ARGV[9] agent tag ('' for none), ARGV[10] when the credentials were
-- checked (ms, '' for no check), ARGV[11] most sessions per user, ARGV[12] session key
-- prefix, ARGV[13] channel, ARGV[14] remember (ms).
-- Returns {ttl, start, ended id, ...}, or {-1} when a revocation of every session of the
-- user came after the credentials were checked (a login racing a password change).
--@include now
local floor = now
local stamp = redis.call('GET', KEYS[3])
if stamp then
  local at = tonumber(string.match(stamp, '^u:(%d+):'))
  local checked = tonumber(ARGV[10])
  if checked and at > checked then
    return {-1}
  end
  floor = math.max(floor, at)
end
-- Starts are unique and ordered per user: after the user's newest session and after the
-- latest revocation of all of them, whatever the clock did meanwhile.
local newest = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
if newest[2] then
  floor = math.max(floor, 1 - tonumber(newest[2]))
end
local start = floor
local ttl = math.min(tonumber(ARGV[3]), tonumber(ARGV[4]))
-- The absolute end is the start plus the maximum lifetime, and the last use the start
-- until a rotation records one: neither is stored (every byte counts, times 100,000s).
local fields = {'c', ARGV[2]}
local optional = {'a', 'b', 'i', 'l', 'g'}
for n = 1, 5 do
  if ARGV[4 + n] ~= '' then
    table.insert(fields, optional[n])
    table.insert(fields, ARGV[4 + n])
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1], -start, '.' .. ARGV[1])
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
--@include prune
prune(KEYS[2], now)
local result = {ttl, start}
-- Beyond the cap, end the sessions nearest their end (with one idle timeout for all, the
-- least recently used), at most a hundred a login, never the new one.
-- Only live sessions count: expired ones pruning has not reached yet are not ended again.
local over = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') - tonumber(ARGV[11])
if over > 0 then
  local ended = {}
  local most = math.min(over, 100)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'LIMIT', 0, most + 1)) do
    if id ~= ARGV[1] and #ended < most then
      redis.call('DEL', ARGV[12] .. id)
      redis.call('ZREM', KEYS[2], id, '.' .. id)
      table.insert(ended, id)
      table.insert(result, id)
    end
  end
  --@include announce
  announce(KEYS[4], ARGV[13], ended, now, tonumber(ARGV[14]))
end
return result
