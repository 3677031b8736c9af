-- A loan's first step, in the lending bucket's slot: give up part of the units allocated here and not
-- issued, and record the loan under its id. The borrower's allocation grows only afterwards
-- (receive.lua), so the allocations never add up to more than the stock; a crash between the two
-- strands the units (sold by nobody) until the sweeper completes the loan. Idempotent per loan id.
-- KEYS: bucket hash, loans-out hash, the slot's readiness marker
-- ARGV: loan_id, borrower bucket, now_ms, buckets (n: a loan is the lender's fair part, spare / n, at
--       least 1, as domain.LoanSize)
-- Returns: {units, gen}
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then
  local units, gen = string.match(prev, '^(%d+)|([^|]*)|')
  return {tonumber(units), gen}
end
if redis.call('EXISTS', KEYS[3]) == 0 then return {0, ''} end
local c = redis.call('HMGET', KEYS[1], 'alloc', 'issued', 'sealed', 'gen')
if not c[1] or c[3] == '1' then return {0, ''} end
local alloc, issued = tonumber(c[1]), tonumber(c[2] or '0')
local spare = alloc - issued
if spare <= 0 then return {0, c[4] or ''} end
local units = math.floor(spare / tonumber(ARGV[4]))
if units < 1 then units = 1 end
alloc = alloc - units
redis.call('HSET', KEYS[1], 'alloc', alloc, 'remaining', alloc - issued)
redis.call('HSET', KEYS[2], ARGV[1], units .. '|' .. (c[4] or '') .. '|' .. ARGV[2] .. '|' .. ARGV[3])
return {units, c[4] or ''}
