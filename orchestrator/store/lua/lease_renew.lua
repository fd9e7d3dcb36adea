-- Extends a lease its holder still holds: KEYS lease. ARGV holder, ttl ms. 1 extended, 0 not held.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
