-- The verdict on a pending claim's debit, in the user's slot (the sweeper's, and a refused debit's before
-- its unit is released): if the debit happened, the claim must be confirmed; if not, mark this
-- reservation's debit void so a late one can never happen, and the unit is released. Each reservation
-- has its own mark, beside the claim's debit record: a late void of an old reservation must not unmark
-- a newer one, whose own late debit would then charge for a released unit.
-- KEYS: debits hash
-- ARGV: claim_id, reservation token
-- Returns: 'debited' | 'void'
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done and string.sub(done, 1, 5) ~= 'void:' then return 'debited' end
redis.call('HSET', KEYS[1], ARGV[1] .. '|void|' .. ARGV[2], 'void')
return 'void'
