-- Step 3 of a points claim, in the user's slot: debit the cost once per claim; never below zero.
-- KEYS: user hash, debits hash
-- ARGV: claim_id, cost, reservation token
-- Returns: 'ok' | 'insufficient_points' | 'void' (the sweeper abandoned this reservation)
local done = redis.call('HGET', KEYS[2], ARGV[1])
-- A reservation voided (void_debit.lua) is never debited; 'void:<token>' on the claim's own record is
-- how voids were kept before each reservation had its own mark.
if done == 'void:' .. ARGV[3] or redis.call('HEXISTS', KEYS[2], ARGV[1] .. '|void|' .. ARGV[3]) == 1 then return 'void' end
if done and string.sub(done, 1, 5) ~= 'void:' then return 'ok' end
local cost = tonumber(ARGV[2])
local u = redis.call('HMGET', KEYS[1], 'credits', 'debits')
local balance = tonumber(u[1] or '0') - tonumber(u[2] or '0')
if balance < cost then return 'insufficient_points' end
redis.call('HINCRBY', KEYS[1], 'debits', cost)
redis.call('HSET', KEYS[2], ARGV[1], cost)
return 'ok'
