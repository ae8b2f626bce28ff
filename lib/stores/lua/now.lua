-- Time comes from the Redis server so that all app instances agree on it, whatever their
-- own clocks say. A statement, not a function: no closure is made on each call.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
