-- A claim's early refusal, in the campaign's slot, read-only: the refusals that do not depend on who
-- asks beyond the units they hold (mode, status, window, per-user limit, stock), in claim.lua's order,
-- for a campaign open to all. Anything else ('' : the slot lost its data, a record for this claim id
-- exists, the campaign is absent, the audience needs the user's profile, or the claim passes) is left
-- to the full claim. A refusal answered here writes nothing: no binding, no rate counter, no unbind.
-- KEYS: campaign hash, held hash, claims hash, the slot's readiness marker
-- ARGV: claim_id, user_id, now_ms, issuance ('claim'|'grant')
-- Returns: a refusal code, or ''
if redis.call('EXISTS', KEYS[4]) == 0 then return '' end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return '' end
local c = redis.call('HMGET', KEYS[1], 'mode', 'status', 'starts_ms', 'ends_ms', 'segment', 'per_user_limit', 'stock', 'issued',
  'alloc', 'sealed', 'dry_until')
if not c[1] or c[10] == '1' then return '' end
local now = tonumber(ARGV[3])
if c[1] ~= ARGV[4] then return 'not_claimable' end
if c[2] ~= 'active' then return 'paused' end
if now < tonumber(c[3]) then return 'not_started' end
if now >= tonumber(c[4]) then return 'ended' end
if c[5] ~= 'all' then return '' end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if held >= tonumber(c[6]) then return 'limit_reached' end
if c[9] then
  -- A bucket (buckets.go): out of its allocation it is sold out only while its last borrow's verdict
  -- holds; after that the full claim borrows again.
  if tonumber(c[8]) >= tonumber(c[9]) and tonumber(c[11] or '0') > now then return 'sold_out' end
  return ''
end
if tonumber(c[8]) >= tonumber(c[7]) then return 'sold_out' end
return ''
