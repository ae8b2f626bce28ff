-- What a presented refresh-token hash is to a session whose fields c (current), p
-- (previous), r (rotated at) and g (agent of the last rotation) are s[1], s[2], s[3], s[4]:
-- 'current'; 'replay', the previous token within the grace window (from the same agent,
-- when the agent is checked); or 'superseded', which is reuse.
local function judge(s, presented, grace, agent, now)
  if s[1] == presented then
    return 'current'
  end
  if s[2] == presented and grace > 0 and now - tonumber(s[3]) <= grace and (agent == '' or not s[4] or s[4] == agent) then
    return 'replay'
  end
  return 'superseded'
end
