-- Apply a campaign row. In 'fence' mode only a newer version writes, so duplicates, reordering and
-- replays are harmless. In 'repair' mode (the reconciler, after it found drift) the row is written
-- whatever the cached version. Either way issued is never lowered: it is the larger of the cache's own
-- count (ahead of MySQL while the ledger drains) and the floor the caller knows was issued, and
-- remaining is computed here, in the same atomic step, so a concurrent claim is never double counted.
-- KEYS: campaign hash
-- ARGV: version, issued floor, mode ('fence'|'repair'), then field/value pairs of the campaign
-- Returns: {applied (0|1), cached_version}
local version = tonumber(ARGV[1])
local repair = ARGV[3] == 'repair'
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and not repair and tonumber(cur) >= version then return {0, tonumber(cur)} end
local issued = tonumber(ARGV[2])
if cur then
  local cached = tonumber(redis.call('HGET', KEYS[1], 'issued') or '0')
  if cached > issued then issued = cached end
end
local fields = {}
local stock = 0
for i = 4, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'stock' then stock = tonumber(ARGV[i + 1]) end
end
local remaining = stock - issued
if remaining < 0 then remaining = 0 end
redis.call('HSET', KEYS[1], 'version', version, 'issued', issued, 'remaining', remaining, unpack(fields))
return {1, version}
