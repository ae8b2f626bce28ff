-- KEYS[1] session, KEYS[2] index. ARGV[1] session id.
-- Returns 1 while the session is live: its hash and its start in the index both exist.
if redis.call('ZSCORE', KEYS[2], '.' .. ARGV[1]) and redis.call('EXISTS', KEYS[1]) == 1 then
  return 1
end
return 0
