-- Moves a task to a new status when the state machine allows it; only then, in
-- the same step, sets fields of a run (when it exists), pushes a queue message
-- and drops the task from the admission index.
-- KEYS: task, history, then optionally run, queue list, admission index.
-- ARGV: target, reason, actor, now, allowed sources (csv), expected current
-- status ('' for any), history limit, status index prefix (with, after a newline,
-- the stream of status changes and its length cap: 'prefix\nstream\ncap'), member, extra fields
-- json, expected field values json, then with the optional keys: run fields
-- json, message ('' for none), '1' to drop from the admission index, score to
-- add to it with ('' for none); and with a lease and its fence as KEYS 6 and 7,
-- its holder and token, which must still be current for the move.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {-1, ''} end
if ARGV[6] ~= '' and ARGV[6] ~= current then return {0, current, 'conflict'} end
for k, v in pairs(cjson.decode(ARGV[11])) do
  if (redis.call('HGET', KEYS[1], k) or '') ~= v then return {0, current, 'conflict'} end
end
local allowed = false
for src in string.gmatch(ARGV[5], '[^,]+') do
  if src == current then allowed = true end
end
if not allowed then return {0, current, 'illegal'} end
if #KEYS >= 7 and (redis.call('GET', KEYS[6]) ~= ARGV[16]
    or tonumber(redis.call('GET', KEYS[7]) or '0') ~= tonumber(ARGV[17])) then
  return {0, current, 'lease'}
end
local seq = redis.call('HINCRBY', KEYS[1], 'history_seq', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_reason', ARGV[2], 'updated_at', ARGV[4])
local extra = cjson.decode(ARGV[10])
for k, v in pairs(extra) do redis.call('HSET', KEYS[1], k, v) end
local index_prefix, changes, cap = string.match(ARGV[8], '^([^\n]*)\n([^\n]+)\n(%d+)$')
if not index_prefix then index_prefix = ARGV[8] end
if current ~= ARGV[1] then
  local score = redis.call('HGET', KEYS[1], 'seq')
  redis.call('ZREM', index_prefix .. current, ARGV[9])
  redis.call('ZADD', index_prefix .. ARGV[1], score, ARGV[9])
end
-- Live pages follow this stream (api/live_hub.py): written with the change, so none is missed.
if changes then
  redis.call('XADD', changes, 'MAXLEN', '~', cap, '*', 'ref', ARGV[9], 'status', ARGV[1],
    'reason', ARGV[2], 'at', ARGV[4])
end
redis.call('RPUSH', KEYS[2], cjson.encode({seq = seq, at = tonumber(ARGV[4]), from = current,
  to = ARGV[1], reason = ARGV[2], actor = ARGV[3]}))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[7]), -1)
if #KEYS >= 5 then
  if ARGV[12] ~= '{}' and redis.call('EXISTS', KEYS[3]) == 1 then
    for k, v in pairs(cjson.decode(ARGV[12])) do redis.call('HSET', KEYS[3], k, v) end
  end
  if ARGV[13] ~= '' then redis.call('LPUSH', KEYS[4], ARGV[13]) end
  if ARGV[14] == '1' then redis.call('ZREM', KEYS[5], ARGV[9]) end
  if ARGV[15] ~= '' then redis.call('ZADD', KEYS[5], 'NX', ARGV[15], ARGV[9]) end
end
return {1, current, seq}
