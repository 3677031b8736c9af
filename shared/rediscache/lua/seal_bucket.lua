-- Phase 1 of a change to a campaign split into buckets (buckets.go), in one bucket's slot: write the
-- rule, close the bucket at what it has issued (alloc = issued, so no claim here and no loan from here
-- can sell a unit until phase 2 hands out the new stock) and open a new generation, which voids every
-- loan of the old one: their units are counted as unsold here and shared out again, so their records
-- go too (a late receipt finds the generation changed and is dropped).
-- KEYS: bucket hash, held hash, claims hash, grants stream, pending zset, the slot's readiness marker,
--       loans-out hash, loans-in hash
-- ARGV: version, gen (the change's generation), mode ('fence'|'create'|'repair'), expect (repair: the
--       version the reconciler saw, 0: none), now_ms, floor (the issued count the change must keep; the
--       first seal of a generation stores it and every run of the change shares out from that one), run
--       (a nonce of the calling run, stored as 'created_by' in a bucket this call creates), then
--       field/value pairs of the campaign
-- Returns: {1, version, sealed_alloc, floor, created_by}: sealed for gen (now or by an earlier run of the change)
--        | {2, version, sealed_alloc, floor, created_by}: already opened for gen (a retry of a change that got that far)
--          created_by is the run that created the bucket in this generation ('' when none did)
--        | {0, cached_version}: refused (-1: evicted, left to the reconciler; -2: slot not ready;
--          otherwise a newer version, or, for a repair, newer than the row and not the one expected)
local version = tonumber(ARGV[1])
local gen = ARGV[2]
local repair = ARGV[3] == 'repair'
if not repair and redis.call('EXISTS', KEYS[6]) == 0 then return {0, -2} end
local cur = redis.call('HMGET', KEYS[1], 'version', 'gen', 'sealed', 'sealed_alloc', 'issued', 'plan_floor', 'created_by')
if cur[1] and cur[2] == gen then
  local status = 2
  if cur[3] == '1' then status = 1 end
  return {status, version, tonumber(cur[4]), tonumber(cur[6] or '0'), cur[7] or ''}
end
local c = tonumber(cur[1] or '0')
if repair then
  -- Forward to the row, never back past a change applied since the reconciler looked (unless it is
  -- the version the reconciler saw: then rewriting it is the repair).
  if not cur[1] and tonumber(ARGV[4]) ~= 0 then return {0, -1} end
  if c ~= tonumber(ARGV[4]) and c > version then return {0, c} end
else
  if cur[1] and c >= version then return {0, c} end
  -- Only a change that found no bucket at all ('create') may create one.
  if not cur[1] and (ARGV[3] ~= 'create' or redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) > 0) then return {0, -1} end
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
local created = ''
if not cur[1] then created = ARGV[7] end
local fields = {}
for i = 8, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], 'version', version, 'gen', gen, 'sealed', 1, 'sealed_ms', ARGV[5], 'issued', issued,
  'alloc', issued, 'sealed_alloc', issued, 'plan_floor', ARGV[6], 'remaining', 0, 'over', 0, 'created_by', created, unpack(fields))
redis.call('HDEL', KEYS[1], 'dry_until')
redis.call('DEL', KEYS[7], KEYS[8])
-- The old generation's receipts kept in the entry itself (receive.lua) go with loans-in.
local names = redis.call('HKEYS', KEYS[1])
for i = 1, #names do
  if string.sub(names[i], 1, 5) == 'loan:' then redis.call('HDEL', KEYS[1], names[i]) end
end
return {1, version, issued, tonumber(ARGV[6]), created}
