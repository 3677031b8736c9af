-- Forget a refused request's binding so that a later retry of the same request id is decided afresh;
-- only if it is still bound to the campaign that refused it.
-- KEYS: request bindings hash
-- ARGV: request_id, the binding as the caller saw it ('campaign_id|bound_ms': only that binding goes, so
--       a re-sent unbind never removes the new binding of a retry that came in between), or a bare
--       campaign_id (any binding to it)
local b = redis.call('HGET', KEYS[1], ARGV[1])
local exact = string.find(ARGV[2], '|', 1, true) ~= nil
if b and (b == ARGV[2] or (not exact and string.sub(b, 1, #ARGV[2] + 1) == ARGV[2] .. '|')) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
