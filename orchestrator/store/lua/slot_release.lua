-- Frees a slot (idempotent). KEYS: global set, holders hash. ARGV: run id, service-set prefix.
local service = redis.call('HGET', KEYS[2], ARGV[1])
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if service then
  removed = removed + redis.call('ZREM', ARGV[2] .. service, ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return removed
