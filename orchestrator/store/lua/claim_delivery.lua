-- Claims a webhook delivery and, only when the claim is new, keeps its pending
-- copy and queues its message.
-- KEYS: delivery claim, queue list, pending event hash, pending events zset.
-- ARGV: ttl, message ('' to only claim), event ('' for no pending copy), body, now, delivery id.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], 'event', ARGV[3], 'body', ARGV[4], 'resent', 0)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[1]))
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
end
if ARGV[2] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
return 1
