-- Reads, for each task, its status, its current run and the named fields of that
-- run: the watcher's reconcile reads this for every active task, and one script
-- per batch is one round trip and one command to encode, where a pipeline of
-- two commands per task cost more in the client than in Redis. Read-only.
-- KEYS: task hashes. ARGV: run key prefix, then the run's fields.
-- Returns per task {status, current run, run fields...}, or false when the task is gone.
local fields = {unpack(ARGV, 2)}
local out = {}
for i, key in ipairs(KEYS) do
  local task = redis.call('HMGET', key, 'status', 'current_run')
  if task[1] then
    local row = {task[1], task[2] or ''}
    if task[2] and task[2] ~= '' and #fields > 0 then
      local run = redis.call('HMGET', ARGV[1] .. task[2], unpack(fields))
      for j = 1, #fields do row[j + 2] = run[j] end
    end
    out[i] = row
  else
    out[i] = false
  end
end
return out
