-- Appends a context document and bumps the task's context version, unless the
-- task is gone or already holds the most documents allowed (a check and a write
-- in one step: two concurrent additions can never both take the last place).
-- KEYS: task, contexts list. ARGV: document, now, most documents (0: no cap).
-- Returns {1, version}, {-1} (no task) or {-2, documents held}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local held = redis.call('LLEN', KEYS[2])
local most = tonumber(ARGV[3])
if most > 0 and held >= most then
  return {-2, held}
end
local version = redis.call('HINCRBY', KEYS[1], 'context_version', 1)
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return {1, version}
