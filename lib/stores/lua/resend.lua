-- How long a write's outcome is kept for a resent delivery of it: until its deadline, past
-- which a delivery changes nothing and answers late (ms; a minute for a write without one).
local function resend_window(deadline, now)
  if deadline == '' then
    return 60000
  end
  return math.max(1, tonumber(deadline) - now + 1)
end
