-- Record a side effect complete. KEYS effect. ARGV holder, now (s), result, how, keep (s).
-- A completion is never written over: returns 1 when written, 0 when it was complete already.
if redis.call('HGET', KEYS[1], 'state') == 'done' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'holder', ARGV[1], 'done_at', ARGV[2], 'result', ARGV[3],
           'how', ARGV[4])
redis.call('HDEL', KEYS[1], 'until')
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
