-- Extend (or, with lease 0, lapse) a live intent. KEYS effect. ARGV holder, now (s), lease (s).
-- Returns 1 when the intent is still this holder's, else 0 (completed, or taken over).
local rec = redis.call('HMGET', KEYS[1], 'state', 'holder')
if rec[1] ~= 'intent' or rec[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'until', tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
