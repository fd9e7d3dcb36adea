-- Records a run's launch (its Job name, phase...) only while the run is still its
-- task's current run in a launchable status and its end is not recorded: the
-- decision to keep a Job is one step with the cancel's move of the task, so a
-- cancel lands either before it (the launch then deletes the Job it made) or
-- after it (the cancel then finds the Job recorded, and its step deletes it).
-- KEYS: run, task. ARGV: run id, ended phases (comma-separated), launchable
-- statuses (comma-separated), the phase to record (only over a phase not yet
-- observed, '' or the first: the watcher may have seen the pod start already,
-- and a run never goes back from Running), that first phase, then name, value...
-- Returns -1 no run, 0 its end is recorded, -3 the task moved on, 1 written.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local phase = redis.call('HGET', KEYS[1], 'phase') or ''
for ended in string.gmatch(ARGV[2], '[^,]+') do
  if phase == ended then return 0 end
end
local task = redis.call('HMGET', KEYS[2], 'current_run', 'status')
if task[1] ~= ARGV[1] then return -3 end
local launchable = false
for status in string.gmatch(ARGV[3], '[^,]+') do
  if task[2] == status then launchable = true end
end
if not launchable then return -3 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if phase == '' or phase == ARGV[5] then redis.call('HSET', KEYS[1], 'phase', ARGV[4]) end
return 1
