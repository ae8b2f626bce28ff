-- Whether a session is live.
local session = KEYS[1]
local index = KEYS[2]
local sessionId = ARGV[1]
-- Returns 1 while live, else 0.
--@include started
if started(index, session, sessionId) then
  return 1
end
return 0
