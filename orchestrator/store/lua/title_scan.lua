-- Walks an index of tasks newest first from below a score and returns the members
-- whose title holds a word, so a title search moves member names, not every title
-- it looked at, and costs Redis a few milliseconds for thousands of tasks.
-- KEYS: the index. ARGV: upper bound ('+inf' or '(<score>'), the word (lowercased;
-- ASCII letters are compared without case, others exactly), how many matches at
-- most, how many members to look at at most, the task key prefix ('orch:task:'),
-- then the service, status and agent a match must have ('' for any).
-- Returns {matching members..., then the last score looked at ('' when the index
-- ended)}.
local found, looked, last, done = {}, 0, '', false
local upper, needle = ARGV[1], ARGV[2]
local want, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
while true do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], upper, '-inf', 'WITHSCORES', 'LIMIT', 0, 200)
  if #batch == 0 then done = true; break end
  local stop = false
  for i = 1, #batch, 2 do
    local member, score = batch[i], batch[i + 1]
    local service, id = string.match(member, '^(.*)/([^/]+)$')
    local row = redis.call('HMGET', ARGV[5] .. service .. ':' .. id, 'title', 'service', 'status', 'agent')
    looked = looked + 1
    last = score
    upper = '(' .. score
    if row[1] and string.find(string.lower(row[1]), needle, 1, true)
        and (ARGV[6] == '' or row[2] == ARGV[6]) and (ARGV[7] == '' or row[3] == ARGV[7])
        and (ARGV[8] == '' or row[4] == ARGV[8]) then
      found[#found + 1] = member
    end
    if #found >= want or looked >= budget then
      stop = true
      done = i + 1 >= #batch and #batch < 400  -- it was the index's last member
      break
    end
  end
  if stop then break end
  if #batch < 400 then done = true; break end
end
if done then last = '' end
found[#found + 1] = last
return found
