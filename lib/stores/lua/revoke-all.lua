-- Ends every session of a user at once (but one), by one stamp.
local index = KEYS[1]
local guard = KEYS[2]             -- the session that must be live ('' id for no guard)
local spare = KEYS[3]             -- the session to spare
local stamp = KEYS[4]
local revoked = KEYS[5]
local first = KEYS[6]             -- this request's outcome, kept until its deadline (with a write id)
local userId = ARGV[1]
local guardId = ARGV[2]
local spareId = ARGV[3]           -- '' for none
local channel = ARGV[4]
local remember = tonumber(ARGV[5])
local presented = ARGV[6]         -- the guard's presented refresh token hash ('' for none)
local graceMs = tonumber(ARGV[7])
local agent = ARGV[8]             -- '' for none
local proofJkt = ARGV[9]          -- the key thumbprint of the DPoP proof that came with it ('' for none)
local deadline = ARGV[10]         -- ms, Redis clock ('' for none)
local writeId = ARGV[11]          -- unique to this request ('' for none)
-- Returns {the stamp's time, the spared session id ('' when none was live)}: every session
-- that started before that time is over but the spared one; -1 if the guard session is not
-- live, or is bound to a key the presented token came without a proof by; -2 if the
-- presented token was superseded (reuse: the guard session alone is revoked); -3 too late.
-- One stamp, whatever the number of sessions: the index is dropped at once (UNLINK frees a
-- large one in the background), the session hashes expire on their own, and every reader
-- takes a session for live only while its start is in the index.
--@include now
-- Past its deadline its request was answered 503: change nothing (see rotate.lua).
if deadline ~= '' and now > tonumber(deadline) then
  return -3
end
if writeId ~= '' then
  -- This very request, delivered again (a client library resends a command whose answer
  -- a broken connection lost), answers as it first did: run again, it would find the
  -- caller's session over, or end the sessions started since.
  local answer = redis.call('GET', first)
  if answer then
    if answer == '-2' then
      return -2
    end
    local at, spared = string.match(answer, '^(%d+) (.*)$')
    return {tonumber(at), spared}
  end
end
--@include resend
--@include announce
--@include started
if guardId ~= '' then
  if not started(index, guard, guardId) then
    return -1
  end
  if presented ~= '' then
    --@include judge
    local s = redis.call('HMGET', guard, 'c', 'p', 'r', 'g', 'j')
    if judge(s, presented, graceMs, agent, now) == 'superseded' then
      redis.call('DEL', guard)
      redis.call('ZREM', index, guardId, '.' .. guardId)
      announce(revoked, channel, {guardId}, now, remember)
      if writeId ~= '' then
        redis.call('SET', first, '-2', 'PX', resend_window(deadline, now))
      end
      return -2
    end
    -- Reuse first, whatever proof came; then a bound session's key, as on refresh.
    if s[5] and s[5] ~= proofJkt then
      return -1
    end
  end
end
--@include ordered
local previousAt, previous = stamp_time(stamp)
local at = after_all(index, previousAt, now)
local spared = ''
local kept
if spareId ~= '' then
  local start = started(index, spare, spareId)
  if start then
    spared = spareId
    kept = {redis.call('ZSCORE', index, spared), start, redis.call('PTTL', spare)}
  end
end
redis.call('UNLINK', index)
if kept then
  redis.call('ZADD', index, kept[1], spared, kept[2], '.' .. spared)
  redis.call('PEXPIRE', index, kept[3])
end
-- The stamp: "u:<at>:<spared>:<user id>", remembered and announced like a revoked session,
-- and kept under the user's tag, where logins check it and the next stamp replaces it.
local member = 'u:' .. at .. ':' .. spared .. ':' .. userId
if previous then
  redis.call('ZREM', revoked, previous)
end
redis.call('SET', stamp, member, 'PX', at + remember - now)
redis.call('ZADD', revoked, at + remember, member)
forget_expired(revoked, now, at + remember - now)
redis.call('PUBLISH', channel, (at + remember) .. ' ' .. member)
if writeId ~= '' then
  redis.call('SET', first, at .. ' ' .. spared, 'PX', resend_window(deadline, now))
end
return {at, spared}
