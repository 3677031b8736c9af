-- Phase 1 of a change to a campaign split into buckets (buckets.go), in one bucket's slot: write the
-- rule, close the bucket at what it has issued (alloc = issued, so no claim here and no loan from here
-- can sell a unit until phase 2 hands out the new stock) and open a new generation, which voids every
-- loan still on its way from the old one.
-- KEYS: bucket hash, held hash, claims hash, grants stream, pending zset, the slot's readiness marker
-- ARGV: version, gen (the change's generation), mode ('fence'|'repair'), expect (repair: the version
--       the reconciler saw, 0: none), then field/value pairs of the campaign
-- Returns: {1, version, sealed_alloc}: sealed for gen (now or by an earlier run of the same change)
--        | {2, version, sealed_alloc}: already opened for gen (a retry of a change that got that far)
--        | {0, cached_version}: refused (-1: evicted, left to the reconciler; -2: slot not ready;
--          otherwise a newer version, or not the version a repair expected)
local version = tonumber(ARGV[1])
local gen = ARGV[2]
local repair = ARGV[3] == 'repair'
if not repair and redis.call('EXISTS', KEYS[6]) == 0 then return {0, -2} end
local cur = redis.call('HMGET', KEYS[1], 'version', 'gen', 'sealed', 'sealed_alloc', 'issued')
if cur[1] and cur[2] == gen then
  if cur[3] == '1' then return {1, version, tonumber(cur[4])} end
  return {2, version, tonumber(cur[4])}
end
local c = tonumber(cur[1] or '0')
if repair then
  if c ~= tonumber(ARGV[4]) and c ~= version then return {0, c} end
else
  if cur[1] and c >= version then return {0, c} end
  if not cur[1] and redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) > 0 then return {0, -1} end
end
local issued = 0
if cur[1] then
  issued = tonumber(cur[5] or '0')
else
  -- Restored from MySQL (restore_claims.lua put its users' held counts back first): what its users
  -- hold is what it issued.
  local held = redis.call('HVALS', KEYS[2])
  for i = 1, #held do issued = issued + tonumber(held[i]) end
end
local fields = {}
for i = 5, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], 'version', version, 'gen', gen, 'sealed', 1, 'issued', issued, 'alloc', issued,
  'sealed_alloc', issued, 'remaining', 0, unpack(fields))
redis.call('HDEL', KEYS[1], 'dry_until')
return {1, version, issued}
