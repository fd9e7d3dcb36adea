-- A run and its task (and the task's context documents) in one round trip.
-- KEYS: run. ARGV: task key prefix, contexts suffix ('' to skip the contexts).
-- Returns {} without a run, else {run fields, task fields, contexts}.
local run = redis.call('HGETALL', KEYS[1])
if #run == 0 then return {} end
local service, task_id
for i = 1, #run, 2 do
  if run[i] == 'service' then service = run[i + 1] elseif run[i] == 'task_id' then task_id = run[i + 1] end
end
if not service or not task_id then return {run, {}, {}} end
local key = ARGV[1] .. service .. ':' .. task_id
local contexts = {}
if ARGV[2] ~= '' then contexts = redis.call('LRANGE', key .. ARGV[2], 0, -1) end
return {run, redis.call('HGETALL', key), contexts}
