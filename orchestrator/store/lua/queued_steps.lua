-- Which (step, run) messages still wait in a queue. KEYS the queue's lists (one per priority).
-- ARGV pairs: step name, quoted argument ("'<run id>'" as the message's argsrepr writes it), ...
-- Returns one 0/1 per pair. Plain substring search of each raw message (headers are plain JSON):
-- a list of thousands is read once per call, by the server, without moving a message.
local n = #ARGV / 2
local found = {}
for i = 1, n do found[i] = 0 end
for _, key in ipairs(KEYS) do
  local messages = redis.call('LRANGE', key, 0, -1)
  for _, raw in ipairs(messages) do
    for i = 1, n do
      if found[i] == 0 and string.find(raw, ARGV[2 * i - 1], 1, true)
          and string.find(raw, ARGV[2 * i], 1, true) then
        found[i] = 1
      end
    end
  end
end
return found
