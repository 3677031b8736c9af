-- Phase 2 of a change to a campaign split into buckets, in one bucket's slot: hand the bucket its share
-- of the stock left once every bucket was sealed. Only a bucket still sealed for this generation
-- opens, so a retried change never hands out a share twice.
-- KEYS: bucket hash
-- ARGV: gen, share, shortfall (units the cache must count as issued beyond the buckets' own counts:
--       grants it lost; only bucket 0 is given any), over (1: the stock is below what the buckets had
--       issued, so a reservation released from now on gives its unit up instead of selling it again)
-- Returns 1 when opened now, 0 otherwise
local cur = redis.call('HMGET', KEYS[1], 'gen', 'sealed', 'alloc', 'issued')
if cur[1] ~= ARGV[1] or cur[2] ~= '1' then return 0 end
local shortfall = tonumber(ARGV[3])
local issued = tonumber(cur[4]) + shortfall
local alloc = tonumber(cur[3]) + shortfall + tonumber(ARGV[2])
-- Over: reservations released while sealed give their unit up too (as release.lua does once open).
if ARGV[4] == '1' then alloc = issued + tonumber(ARGV[2]) end
redis.call('HSET', KEYS[1], 'sealed', 0, 'alloc', alloc, 'issued', issued, 'remaining', alloc - issued, 'over', ARGV[4])
redis.call('HDEL', KEYS[1], 'dry_until')
return 1
