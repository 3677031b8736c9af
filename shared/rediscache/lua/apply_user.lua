-- Apply a user row behind the version fence. Credits come from MySQL; debits are the cache's own (claims
-- debit here first) and come from MySQL only when the user is new to the cache.
-- KEYS: user hash
-- ARGV: version, registered_ms, member, credits, db_debits
-- Returns: {applied (0|1), cached_version}
local version = tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) >= version then return {0, tonumber(cur)} end
if not cur then redis.call('HSET', KEYS[1], 'debits', ARGV[5]) end
redis.call('HSET', KEYS[1], 'version', version, 'known', 1, 'registered_ms', ARGV[2], 'member', ARGV[3], 'credits', ARGV[4])
return {1, version}
