-- Step 2 of a claim, in the campaign's slot: decide exactly as domain.DecideClaim and, when it passes,
-- take one unit of stock. A claim without a points cost is granted and streamed at once; one with a
-- cost is reserved as pending until the user's slot has debited the points (confirm.lua / release.lua).
-- KEYS: campaign hash, held hash, claims hash, grants stream, pending zset, the slot's readiness marker
-- ARGV: user_id, claim_id, request_id, now_ms, issuance ('claim'|'grant'), known, registered_ms, member,
--       attempt (a nonce of the calling invocation, stored with the claim), balance (the user's points as
--       step 1 read them; '' when unknown)
-- Returns: {'replay', claim_json} | {'ok', claim_json} | {refusal_code} | {'dry', gen} | {'cache_lost'} (the
-- slot lost its data: its records and counts cannot be trusted until the rebuild)
-- A bucket of a campaign split into buckets (buckets.go) sells up to its allocation, 'alloc', not the
-- stock: out of units, it answers 'dry' with its generation, and the caller borrows units from the
-- other buckets; 'dry_until' (ms) says the last borrow found none, so until then it is sold out. A
-- bucket sealed by a stock change in progress answers 'unavailable'.
-- A client re-sends a script after a read timeout (go-redis does): the re-sent call carries the same
-- attempt and finds the claim its first run recorded, so it answers 'ok' as the first run did, not
-- 'replay'. A new invocation (the user's own retry) has another attempt and gets 'replay'.
if redis.call('EXISTS', KEYS[6]) == 0 then return {'cache_lost'} end
local attempt = ARGV[9] or ''
local existing = redis.call('HGET', KEYS[3], ARGV[2])
if existing then
  if attempt ~= '' and cjson.decode(existing).attempt == attempt then return {'ok', existing} end
  return {'replay', existing}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- Holdings or grants without the campaign mean its entry was evicted: fail closed until the
  -- reconciler rebuilds it, rather than call a live campaign unknown.
  if redis.call('EXISTS', KEYS[2], KEYS[4]) > 0 then return {'unavailable'} end
  return {'campaign_not_found'}
end
local c = redis.call('HMGET', KEYS[1], 'mode', 'status', 'starts_ms', 'ends_ms', 'segment', 'new_user_days',
  'per_user_limit', 'stock', 'issued', 'cost_points', 'benefit_type', 'benefit_amount', 'id', 'alloc', 'sealed', 'gen',
  'dry_until')
if c[15] == '1' then return {'unavailable'} end
local now = tonumber(ARGV[4])
if c[1] ~= ARGV[5] then return {'not_claimable'} end
if c[2] ~= 'active' then return {'paused'} end
if now < tonumber(c[3]) then return {'not_started'} end
if now >= tonumber(c[4]) then return {'ended'} end
local segment, known = c[5], ARGV[6] == '1'
if segment == 'members' then
  if not (known and ARGV[8] == '1') then return {'not_eligible'} end
elseif segment == 'new_users' then
  if not known then return {'not_eligible'} end
  local cutoff = now - tonumber(c[6]) * 86400000
  if tonumber(ARGV[7]) <= cutoff then return {'not_eligible'} end
elseif segment ~= 'all' then
  return {'not_eligible'}
end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held >= tonumber(c[7]) then return {'limit_reached'} end
local stock, issued = tonumber(c[8]), tonumber(c[9])
if c[14] then stock = tonumber(c[14]) end
if issued >= stock then
  if c[14] and tonumber(c[17] or '0') <= now then return {'dry', c[16] or ''} end
  return {'sold_out'}
end
-- A user who could not pay when step 1 read their balance is refused here, before a unit is reserved:
-- a reservation that the debit would only release shows other users a unit taken (sold_out, or
-- limit_reached for this user) that is never issued. The debit in the user's slot still decides.
local cost = tonumber(c[10])
local balance = tonumber(ARGV[10] or '')
if cost > 0 and balance ~= nil and balance < cost then return {'insufficient_points'} end
issued = issued + 1
redis.call('HSET', KEYS[1], 'issued', issued, 'remaining', stock - issued)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local state = 'granted'
local reservation = 0
if cost > 0 then
  state = 'pending'
  -- Each reservation gets its own token, so voiding an abandoned one never blocks a later retry.
  reservation = redis.call('HINCRBY', KEYS[1], 'reservations', 1)
end
local claim = cjson.encode({
  id = ARGV[2], campaign_id = c[13], user_id = ARGV[1], request_id = ARGV[3],
  benefit_type = c[11], benefit_amount = tonumber(c[12]), cost_points = cost,
  granted_ms = now, state = state, reservation = reservation, attempt = attempt,
})
redis.call('HSET', KEYS[3], ARGV[2], claim)
if state == 'granted' then
  redis.call('XADD', KEYS[4], '*', 'claim', claim)
else
  redis.call('ZADD', KEYS[5], now, ARGV[2])
end
return {'ok', claim}
