-- Whether a session is live: its hash and its start in the index both exist.
local session = KEYS[1]
local index = KEYS[2]
local sessionId = ARGV[1]
-- Returns 1 while live, else 0.
if redis.call('ZSCORE', index, '.' .. sessionId) and redis.call('EXISTS', session) == 1 then
  return 1
end
return 0
