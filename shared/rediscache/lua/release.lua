-- Compensation of a paid claim, in the campaign's slot: the debit was refused or abandoned, so the
-- reserved unit goes back to stock. Only a pending claim can be released; a granted one never is.
-- KEYS: campaign hash, held hash, claims hash, pending zset
-- ARGV: claim_id, reservation token
-- Returns: 'released' | 'granted' | 'missing' | 'other' (a later reservation of the same claim id,
-- which a stale release must not touch)
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return 'missing' end
local claim = cjson.decode(raw)
if claim.state ~= 'pending' then return 'granted' end
if tostring(claim.reservation or 0) ~= ARGV[2] then return 'other' end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local issued = redis.call('HINCRBY', KEYS[1], 'issued', -1)
local b = redis.call('HMGET', KEYS[1], 'alloc', 'over', 'stock')
local stock = tonumber(b[3] or '0')
if b[1] then
  -- A bucket (buckets.go). If its stock was lowered below what the buckets had issued, the unit is
  -- not sold again: it goes with the reservation, as max(0, stock − issued) keeps it unsold for a
  -- campaign of one bucket.
  stock = tonumber(b[1])
  if b[2] == '1' and stock > issued then
    stock = stock - 1
    redis.call('HSET', KEYS[1], 'alloc', stock)
  end
end
local remaining = stock - issued
if remaining < 0 then remaining = 0 end
redis.call('HSET', KEYS[1], 'remaining', remaining)
if redis.call('HINCRBY', KEYS[2], claim.user_id, -1) <= 0 then redis.call('HDEL', KEYS[2], claim.user_id) end
return 'released'
