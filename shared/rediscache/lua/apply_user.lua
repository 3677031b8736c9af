-- Apply a user row behind the version fence. Credits come from MySQL; debits are the cache's own (claims
-- debit here first) and come from MySQL only when the user is new to the cache.
-- Outside a rebuild ('restore'), a write into a slot whose readiness marker is gone is refused: the
-- slot lost the user's debits, MySQL's lag the ledger, and an entry created from them would let points
-- be spent twice; the rebuild writes it after the grant backstop has drained.
-- KEYS: user hash, the slot's readiness marker
-- ARGV: version, registered_ms, member, credits, db_debits, mode ('fence'|'restore')
-- Returns: {applied (0|1), cached_version (-2: slot not ready)}
local version = tonumber(ARGV[1])
if ARGV[6] ~= 'restore' and redis.call('EXISTS', KEYS[2]) == 0 then return {0, -2} end
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) >= version then return {0, tonumber(cur)} end
if not cur then redis.call('HSET', KEYS[1], 'debits', ARGV[5]) end
redis.call('HSET', KEYS[1], 'version', version, 'known', 1, 'registered_ms', ARGV[2], 'member', ARGV[3], 'credits', ARGV[4])
return {1, version}
