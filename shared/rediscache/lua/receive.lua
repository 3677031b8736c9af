-- A loan's second step, in the borrowing bucket's slot: the allocation grows by the units lent, once
-- per loan id, and only within the generation the units were lent in. A stock change since then sealed
-- every bucket at what it had issued and shared out the rest, loaned units included; applying the loan
-- now would count them twice, so it is dropped (the units were already handed out again). A borrower
-- sealed in the loan's own generation (a change half-way through opening the buckets) is not ready to
-- take it yet: nothing is recorded, and the sweep delivers it once the bucket is open.
-- KEYS: bucket hash, loans-in hash
-- ARGV: loan_id, units, gen (the lender's when it lent), lender bucket, now_ms
-- Returns 1 when applied (now or before), 0 when dropped, 2 when it must wait
-- The receipt is recorded twice: in loans-in, and in the bucket's own entry ('loan:<id>'). loans-in is
-- a key of its own, written once per loan and read again only when the sweep re-sends the loan: the
-- first key of a busy bucket that an eviction takes, while the entry stays. A loan it alone remembered
-- would then be applied a second time. The entry's record goes only with the entry (a bucket that is
-- gone takes no loan) or with the next generation's seal.
local prev = redis.call('HGET', KEYS[2], ARGV[1]) or redis.call('HGET', KEYS[1], 'loan:' .. ARGV[1])
if prev then return tonumber(string.sub(prev, 1, 1)) end
local c = redis.call('HMGET', KEYS[1], 'alloc', 'issued', 'sealed', 'gen')
local units = tonumber(ARGV[2])
local same = c[1] and (c[4] or '') == ARGV[3]
if same and c[3] == '1' then return 2 end
local applied = 0
if same and units > 0 then
  local alloc = tonumber(c[1]) + units
  redis.call('HSET', KEYS[1], 'alloc', alloc, 'remaining', alloc - tonumber(c[2] or '0'))
  redis.call('HDEL', KEYS[1], 'dry_until')
  applied = 1
end
local rec = applied .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[5]
redis.call('HSET', KEYS[2], ARGV[1], rec)
if c[1] then redis.call('HSET', KEYS[1], 'loan:' .. ARGV[1], rec) end
return applied
