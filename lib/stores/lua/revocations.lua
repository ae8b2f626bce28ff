-- Reads a page of a revocation bucket as one string, "<score> <length> <member>" for each
-- entry, space separated (a member may hold spaces; its length in bytes tells where it
-- ends): one reply to decode instead of two per entry.
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', ARGV[3], ARGV[4])
local parts = {}
for i = 1, #entries, 2 do
  parts[#parts + 1] = entries[i + 1] .. ' ' .. #entries[i] .. ' ' .. entries[i]
end
return table.concat(parts, ' ')
