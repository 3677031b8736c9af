-- Step 1 of a claim, in the user's slot: find or make the request's binding to a campaign, apply the
-- per-user rate limit, and return the profile and balance the campaign step needs.
-- A binding is "campaign_id|bound_ms": its age tells a binding left by a crash (old) from one whose
-- claim is still running (young), which must not be moved to another campaign.
-- KEYS: user hash, request bindings hash, rate counter, the slot's readiness marker
-- ARGV: request_id, campaign_id, rate_limit_per_second (0 = off), now_ms
-- Returns: {status, binding, known, registered_ms, member, balance, retry_after_ms, made}; status 'cache_lost'
-- (the slot lost its data: nothing bound, nothing counted) | 'rate_limited' | 'ok'; made is 1 when this
-- run bound the request (a re-sent run finds its first run's binding: 0, which its caller takes as
-- another call's, the safe side)
if redis.call('EXISTS', KEYS[4]) == 0 then return {'cache_lost', '', 0, 0, 0, 0, 0, 0} end
local bound = redis.call('HGET', KEYS[2], ARGV[1])
local rate = tonumber(ARGV[3])
if not bound and rate > 0 then
  -- A retry of an already bound request is never rate limited: it only reads its own answer. A refused
  -- request is not counted, so the script run twice (a client's re-send) leaves the counter as once.
  local n = tonumber(redis.call('GET', KEYS[3]) or '0')
  if n >= rate then
    local ttl = redis.call('PTTL', KEYS[3])
    if ttl < 0 then redis.call('PEXPIRE', KEYS[3], 1000); ttl = 1000 end
    return {'rate_limited', '', 0, 0, 0, 0, ttl, 0}
  end
  if redis.call('INCR', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], 1000) end
end
local made = 0
if not bound then
  bound = ARGV[2] .. '|' .. ARGV[4]
  redis.call('HSET', KEYS[2], ARGV[1], bound)
  made = 1
end
local u = redis.call('HMGET', KEYS[1], 'known', 'registered_ms', 'member', 'credits', 'debits')
local known = 0
if u[1] == '1' then known = 1 end
local balance = tonumber(u[4] or '0') - tonumber(u[5] or '0')
if balance < 0 then balance = 0 end
return {'ok', bound, known, tonumber(u[2] or '0'), tonumber(u[3] or '0'), balance, 0, made}
