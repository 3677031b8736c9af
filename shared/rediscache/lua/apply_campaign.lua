-- Apply a campaign row. In 'fence' mode only a newer version writes, so duplicates, reordering and
-- replays are harmless; an entry that was evicted while the campaign's other keys remain is not
-- recreated here, because MySQL's issued count lags the grants in flight: the reconciler rebuilds it
-- with those counted. In 'repair' mode (the reconciler, after it found drift) the row is written past
-- the fence, but only if the cached version is the one the reconciler saw (0: absent) or not newer
-- than the row, so a change applied meanwhile is never rolled back past. Either way issued is never lowered: it is the
-- larger of the cache's own count and the floor the caller knows was issued, and remaining is computed
-- here, in the same atomic step, so a concurrent claim is never double counted.
-- A fence write into a slot whose readiness marker is gone (the slot lost its data and the rebuild has
-- not finished) is refused: MySQL's issued count lags the grants in flight, and an entry created from
-- it would let the campaign oversell once the slot opens; the rebuild writes it (in 'repair' mode)
-- after the grant backstop has drained.
-- KEYS: campaign hash, held hash, claims hash, grants stream, pending zset, the slot's readiness marker
-- ARGV: version, issued floor, mode ('fence'|'repair'), expected cached version (repair), then
--       field/value pairs of the campaign
-- Returns: {applied (0|1), cached_version (-1: evicted, left to the reconciler; -2: slot not ready)}
local version = tonumber(ARGV[1])
local repair = ARGV[3] == 'repair'
if not repair and redis.call('EXISTS', KEYS[6]) == 0 then return {0, -2} end
local cur = redis.call('HGET', KEYS[1], 'version')
if repair then
  -- A version up to the row's (the row itself, written by this very call before a re-send or by the
  -- fence; or an older one the rebuild finds on a slot that kept its data): writing the row rolls
  -- nothing back and raises issued to the floor.
  local c = tonumber(cur or '0')
  -- An absent entry is written only by the rebuild (expect 0), which restored the holdings first.
  if not cur and tonumber(ARGV[4]) ~= 0 then return {0, -1} end
  if c ~= tonumber(ARGV[4]) and c > version then return {0, c} end
else
  if cur and tonumber(cur) >= version then return {0, tonumber(cur)} end
  if not cur and redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) > 0 then return {0, -1} end
end
local issued = tonumber(ARGV[2])
if cur then
  local cached = tonumber(redis.call('HGET', KEYS[1], 'issued') or '0')
  if cached > issued then issued = cached end
end
local fields = {}
local stock = 0
for i = 5, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'stock' then stock = tonumber(ARGV[i + 1]) end
end
local remaining = stock - issued
if remaining < 0 then remaining = 0 end
redis.call('HSET', KEYS[1], 'version', version, 'issued', issued, 'remaining', remaining, unpack(fields))
return {1, version}
