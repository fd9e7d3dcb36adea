-- Extends a held slot; 0 when it is not held (released or expired).
-- KEYS: global set, holders hash. ARGV: run id, lease ms, service-set prefix.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then return 0 end
local service = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if service then redis.call('ZADD', ARGV[3] .. service, now + tonumber(ARGV[2]), ARGV[1]) end
return 1
