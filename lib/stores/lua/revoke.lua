-- KEYS[1] session, KEYS[2] index, KEYS[3] revoked.
-- ARGV[1] session id, ARGV[2] channel, ARGV[3] remember (ms), ARGV[4] the presented
-- refresh token's hash ('' when the session was named otherwise), ARGV[5] grace (ms),
-- ARGV[6] agent tag ('' for none).
-- Returns 1 revoked, 0 not live, 2 reused (the presented token was superseded: revoked too).
local live = redis.call('ZSCORE', KEYS[2], '.' .. ARGV[1]) and redis.call('EXISTS', KEYS[1]) == 1
--@include now
local outcome = 0
if live then
  outcome = 1
  if ARGV[4] ~= '' then
    --@include judge
    if judge(redis.call('HMGET', KEYS[1], 'c', 'p', 'r', 'g'), ARGV[4], tonumber(ARGV[5]), ARGV[6], now) == 'superseded' then
      outcome = 2
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1], '.' .. ARGV[1])
-- The index now lives only as long as its longest-lived session left.
local last = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
if last[2] then
  redis.call('PEXPIREAT', KEYS[2], last[2])
end
if live then
  --@include announce
  announce(KEYS[3], ARGV[2], {ARGV[1]}, now, tonumber(ARGV[3]))
end
return outcome
