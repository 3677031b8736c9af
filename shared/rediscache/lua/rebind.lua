-- Move a request's binding from a campaign that never recorded it (a crash before step 2) to the
-- campaign now asked for. Compare-and-set, so two racing retries cannot both move it.
-- KEYS: request bindings hash
-- ARGV: request_id, from_campaign, to_campaign
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
