-- Records a finished run's usage once: writes it on the run and adds it to the
-- day's counters of its service (per agent) and of all services. A second call
-- for the same run (a redelivered finish) changes nothing: the run's
-- `usage_counted` flag is set in the same atomic step as the increments.
-- KEYS: run, service-day hash, day hash.
-- ARGV: usage JSON, agent, ttl seconds, then metric, amount, metric, amount...
-- Returns -1 for no run, 0 when already counted, 1 when counted now.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'usage_counted') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'usage', ARGV[1], 'usage_counted', '1')
for i = 4, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2] .. '|' .. ARGV[i], ARGV[i + 1])
  redis.call('HINCRBYFLOAT', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
