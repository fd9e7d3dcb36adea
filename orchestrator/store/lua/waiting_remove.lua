-- Drops a task from the admission index unless its status is one to keep.
-- KEYS: waiting set, task. ARGV: member, statuses to keep (csv).
local status = redis.call('HGET', KEYS[2], 'status') or ''
for keep in string.gmatch(ARGV[2], '[^,]+') do
  if keep == status then return 0 end
end
return redis.call('ZREM', KEYS[1], ARGV[1])
