-- Deletes an ended task and everything kept under it, if it still qualifies.
-- It qualifies when its status is one of ARGV[2] (ended), its last change is
-- older than ARGV[1], and none of its dependents is still to run: checked here,
-- in the same atomic step as the deletion, so a retry or new context that lands
-- between the caller's read and this script keeps the task.
-- KEYS: task, history, runs list, contexts, dependents, all-index, service-index,
-- then the run records. ARGV: cutoff (epoch s), ended statuses (csv), status-index
-- prefix, agent-index prefix, task-key prefix of the service, member.
local fields = redis.call('HMGET', KEYS[1], 'status', 'updated_at', 'agent')
local status, updated, agent = fields[1], tonumber(fields[2]), fields[3]
if not status then return 0 end
local ended = false
for name in string.gmatch(ARGV[2], '[^,]+') do
  if name == status then ended = true end
end
if not ended or not updated or updated >= tonumber(ARGV[1]) then return 0 end
for _, dependent in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local theirs = redis.call('HGET', ARGV[5] .. dependent, 'status')
  if theirs then
    local done = false
    for name in string.gmatch(ARGV[2], '[^,]+') do
      if name == theirs then done = true end
    end
    if not done then return 0 end
  end
end
redis.call('ZREM', KEYS[6], ARGV[6])
redis.call('ZREM', KEYS[7], ARGV[6])
redis.call('ZREM', ARGV[3] .. status, ARGV[6])
if agent then redis.call('ZREM', ARGV[4] .. agent, ARGV[6]) end
for i = 1, #KEYS do
  if i ~= 6 and i ~= 7 then redis.call('DEL', KEYS[i]) end
end
return 1
