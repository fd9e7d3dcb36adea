-- Sets fields of a task or run only when its hash exists (never resurrects a
-- deleted record) and, with phases in ARGV[1] (comma-separated, '' for none),
-- only while its `phase` is none of them: the end of a run is written once, and
-- whoever read the run before someone else recorded its end (a watcher, a
-- cancel) must not write over it. ARGV: those phases, then name, value...
-- Returns -1 for no record, 0 when its phase forbade the write, 1 when written.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' then
  local phase = redis.call('HGET', KEYS[1], 'phase') or ''
  for ended in string.gmatch(ARGV[1], '[^,]+') do
    if phase == ended then return 0 end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
