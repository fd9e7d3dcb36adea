-- Drops a lease its holder still holds: KEYS lease. ARGV holder. 1 dropped, 0 not held.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
