-- Step 4 of a paid claim, in the campaign's slot: the points are debited, so the pending unit becomes
-- a grant and enters the stream. Idempotent.
-- KEYS: claims hash, grants stream, pending zset
-- ARGV: claim_id
-- Returns: {'ok', claim_json} | {'missing'}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'missing'} end
local claim = cjson.decode(raw)
if claim.state == 'granted' then return {'ok', raw} end
claim.state = 'granted'
raw = cjson.encode(claim)
redis.call('HSET', KEYS[1], ARGV[1], raw)
redis.call('XADD', KEYS[2], '*', 'claim', raw)
redis.call('ZREM', KEYS[3], ARGV[1])
return {'ok', raw}
