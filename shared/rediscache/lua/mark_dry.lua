-- A borrow found no units in any other bucket: the bucket answers sold_out, without asking them
-- again, until until_ms. Only an existing entry is marked (a bare HSET would create one).
-- KEYS: bucket hash
-- ARGV: until_ms
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'dry_until', ARGV[1]) end
return 1
