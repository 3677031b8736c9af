-- Move a request's binding from a campaign that never recorded it (a crash before step 2, long enough
-- ago that no claim can still be running there) to the campaign now asked for. Compare-and-set on the
-- whole binding, so two racing retries cannot both move it.
-- KEYS: request bindings hash
-- ARGV: request_id, old binding, new binding
-- Returns 1 when the binding is the new one (also when a re-send of this call finds its own move done).
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[3] then return 1 end
if cur == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
