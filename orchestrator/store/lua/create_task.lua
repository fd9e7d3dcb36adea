-- Creates a task with its indexes, first history entry and idempotency record,
-- or reports the one that exists. KEYS: task, history, all-index, service-index,
-- agent-index, status-index, seq, idem (or a dummy), queue list (or a dummy),
-- dependents sets... ARGV: status, member, now, actor, reason, idem ttl (0: none),
-- idem value, message ('' for none), task id, most tasks of the service (0: no
-- cap), then the task's fields as name, value...
-- Returns {1, seq}, {0, seq of the existing task} or {-1, tasks the service holds}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'seq') or ''}
end
-- The service index holds every task of the service, whatever its status: the
-- cap is checked and the task added in one step, so concurrent submissions never overshoot.
local most = tonumber(ARGV[10])
local held = redis.call('ZCARD', KEYS[4])
if most > 0 and held >= most then
  return {-1, held}
end
local seq = redis.call('INCR', KEYS[7])
redis.call('HSET', KEYS[1], 'seq', seq, 'history_seq', 1, unpack(ARGV, 11))
redis.call('ZADD', KEYS[3], seq, ARGV[2])
redis.call('ZADD', KEYS[4], seq, ARGV[2])
redis.call('ZADD', KEYS[5], seq, ARGV[2])
redis.call('ZADD', KEYS[6], seq, ARGV[2])
redis.call('RPUSH', KEYS[2], cjson.encode({seq = 1, at = tonumber(ARGV[3]), from = cjson.null,
  to = ARGV[1], reason = ARGV[5], actor = ARGV[4]}))
if tonumber(ARGV[6]) > 0 then
  redis.call('SET', KEYS[8], ARGV[7], 'EX', tonumber(ARGV[6]))
end
for i = 10, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[9])
end
if ARGV[8] ~= '' then
  redis.call('LPUSH', KEYS[9], ARGV[8])
end
return {1, seq}
