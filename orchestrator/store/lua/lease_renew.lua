-- Extends a lease its holder still holds: KEYS lease. ARGV holder, ttl ms. 1 extended, 0 not held.
-- With a fencing lease as KEYS 2 and 3 (its key and fence) and ARGV 3 and 4 (its holder and
-- token): only while that lease is still held with that token, else -2 (a deposed watcher
-- must not keep a run's workspace alive).
if #KEYS >= 3 and (redis.call('GET', KEYS[2]) ~= ARGV[3]
    or tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[4])) then
  return -2
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
