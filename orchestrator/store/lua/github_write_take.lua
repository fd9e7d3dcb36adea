-- One GitHub write from the shared budget. KEYS window (sorted set), pause.
-- ARGV now (ms), window (ms), limit, member. Returns 0 when taken, else the ms to wait:
-- until the pause GitHub asked for ends, or until the oldest write of the window leaves it.
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
