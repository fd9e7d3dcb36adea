-- Which (step, argument) messages still wait in a queue. KEYS the queue's lists (one per priority).
-- ARGV pairs: step name, the message's argsrepr ("['<run id>']"), ...
-- Returns one 0/1 per pair. Each raw message is read once: its headers (plain JSON in kombu's
-- envelope) name the step ("task") and its arguments ("argsrepr"), looked up in a table, so a
-- queue of thousands costs one pass whatever the number of pairs. Called only for stuck tasks.
local wanted = {}
local found = {}
local n = #ARGV / 2
for i = 1, n do
  wanted[ARGV[2 * i - 1] .. '\0' .. ARGV[2 * i]] = i
  found[i] = 0
end
for _, key in ipairs(KEYS) do
  local messages = redis.call('LRANGE', key, 0, -1)
  for _, raw in ipairs(messages) do
    local task = string.match(raw, '"task":%s*"([^"]+)"')
    local args = string.match(raw, '"argsrepr":%s*"([^"]*)"')
    if task and args then
      local i = wanted[task .. '\0' .. args]
      if i then found[i] = 1 end
    end
  end
end
return found
