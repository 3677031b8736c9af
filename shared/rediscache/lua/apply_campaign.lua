-- Apply a campaign row behind the version fence: only a newer version writes. The cache's own issued
-- counter is kept (it is ahead of MySQL while the ledger drains) and remaining is computed here, in the
-- same atomic step, so a claim running concurrently can never be double counted.
-- KEYS: campaign hash
-- ARGV: version, db_issued, then field/value pairs of the campaign
-- Returns: {applied (0|1), cached_version}
local version = tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) >= version then return {0, tonumber(cur)} end
local issued = tonumber(ARGV[2])
if cur then issued = tonumber(redis.call('HGET', KEYS[1], 'issued') or '0') end
local fields = {}
local stock = 0
for i = 3, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'stock' then stock = tonumber(ARGV[i + 1]) end
end
local remaining = stock - issued
if remaining < 0 then remaining = 0 end
redis.call('HSET', KEYS[1], 'version', version, 'issued', issued, 'remaining', remaining, unpack(fields))
return {1, version}
