-- Restore recorded claims after a cache loss, before the campaign opens again: claim records (so a
-- retried request gets its original answer) and held counts (so nobody exceeds the per-user limit).
-- Never lowers a count the cache already has.
-- KEYS: held hash, claims hash
-- ARGV: n_users, then user/count pairs, then claim_id/claim_json pairs
local n = tonumber(ARGV[1])
for i = 2, 1 + 2 * n, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
for i = 2 + 2 * n, #ARGV, 2 do
  redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
