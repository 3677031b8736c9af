-- Forget a refused request's binding so that a later retry of the same request id is decided afresh;
-- only if it is still bound to the campaign that refused it.
-- KEYS: request bindings hash
-- ARGV: request_id, campaign_id
local b = redis.call('HGET', KEYS[1], ARGV[1])
if b and (b == ARGV[2] or string.sub(b, 1, #ARGV[2] + 1) == ARGV[2] .. '|') then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
