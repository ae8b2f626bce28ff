-- Proves the revocation feed's path: a write, then a publish on the instance's heartbeat
-- channel, from the node that publishes the revocations of this key's slot.
local key = KEYS[1]
local channel = ARGV[1]
local beat = ARGV[2]
local ttl = ARGV[3]
-- A write first: where writes fail (a replica, an old primary cut off), nothing is published.
--@include now
redis.call('SET', key, beat, 'PX', ttl)
redis.call('PUBLISH', channel, beat .. ' ' .. now)
return now
