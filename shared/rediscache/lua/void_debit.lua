-- The sweeper's verdict on a pending claim, in the user's slot: if the debit happened, the claim must be
-- confirmed; if not, mark it void so a late debit can never happen, and the unit is released.
-- KEYS: debits hash
-- ARGV: claim_id, reservation token
-- Returns: 'debited' | 'void'
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done and string.sub(done, 1, 5) ~= 'void:' then return 'debited' end
redis.call('HSET', KEYS[1], ARGV[1], 'void:' .. ARGV[2])
return 'void'
