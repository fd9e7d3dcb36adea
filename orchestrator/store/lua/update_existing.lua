-- Sets fields of a task or run only when its hash exists (never resurrects a
-- deleted record) and, with phases in ARGV[1] (comma-separated, '' for none),
-- only while its `phase` is none of them: the end of a run is written once, and
-- whoever read the run before someone else recorded its end (a watcher, a
-- cancel) must not write over it. With a lease and its fence as KEYS 2 and 3,
-- only while ARGV 2 and 3 (holder, fencing token) are still current (a deposed
-- watcher must not write). ARGV: those phases, holder, token, then name, value...
-- Returns -1 for no record, -2 when the lease passed on, 0 when its phase forbade the write, 1 when written.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if #KEYS >= 3 and (redis.call('GET', KEYS[2]) ~= ARGV[2]
    or tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[3])) then
  return -2
end
if ARGV[1] ~= '' then
  local phase = redis.call('HGET', KEYS[1], 'phase') or ''
  for ended in string.gmatch(ARGV[1], '[^,]+') do
    if phase == ended then return 0 end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
return 1
