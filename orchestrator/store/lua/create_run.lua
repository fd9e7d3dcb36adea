-- Records a run unless it exists (then leaves it as it is) and returns it.
-- KEYS: run, the task's runs. ARGV: run id, now, then the record as name, value...
if redis.call('HSETNX', KEYS[1], 'run_id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
