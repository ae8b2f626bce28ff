-- A session is live while its hash and its start in the index both exist: revoking every
-- session of a user drops the index and leaves the hashes to expire. Returns the start
-- entry's score (minus the start) while the session is live, else nil.
local function started(index, session, id)
  local score = redis.call('ZSCORE', index, '.' .. id)
  if score and redis.call('EXISTS', session) == 1 then
    return score
  end
  return nil
end
