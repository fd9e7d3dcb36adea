-- Creates a task with its indexes, first history entry and idempotency record,
-- or reports the one that exists. KEYS: task, history, all-index, service-index,
-- agent-index, status-index, seq, idem (or a dummy), queue list (or a dummy),
-- dependents sets... ARGV: status, member, now, actor, reason, idem ttl (0: none),
-- idem value, message ('' for none), task id, then the task's fields as name, value...
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'seq') or ''}
end
local seq = redis.call('INCR', KEYS[7])
redis.call('HSET', KEYS[1], 'seq', seq, 'history_seq', 1, unpack(ARGV, 10))
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
