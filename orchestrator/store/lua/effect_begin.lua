-- Record the intent to cause one side effect. KEYS effect. ARGV holder, now (s), lease (s), keep (s).
-- Returns {state, holder, result}:
--   'done'  the effect was recorded complete: result is what it produced; do nothing
--   'busy'  another holder's intent is still live: it is acting now; do nothing
--   'new'   no earlier intent: act
--   'stale' an earlier intent lapsed without a completion (its holder died between acting and
--           recording): the effect may exist; ask the outside world before acting
local rec = redis.call('HMGET', KEYS[1], 'state', 'holder', 'until', 'result')
local state, holder, till, result = rec[1], rec[2], tonumber(rec[3] or '0'), rec[4]
local now = tonumber(ARGV[2])
if state == 'done' then return {'done', holder or '', result or ''} end
local answer = 'new'
if state == 'intent' then
  if holder ~= ARGV[1] and till > now then return {'busy', holder or '', ''} end
  answer = 'stale'
end
redis.call('HSET', KEYS[1], 'state', 'intent', 'holder', ARGV[1], 'until', now + tonumber(ARGV[3]),
           'intent_at', now)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {answer, ARGV[1], ''}
