-- Stop every GitHub write for ARGV[1] ms (a secondary rate limit's Retry-After or reset),
-- never shortening a longer pause another worker recorded. KEYS pause. Returns the pause in ms.
local left = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if left >= wanted then return left end
redis.call('SET', KEYS[1], '1', 'PX', wanted)
return wanted
