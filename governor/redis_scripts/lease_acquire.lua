-- lease_acquire: ARGV = slot key base, limit, ttl_ms, value (token .. "\n" .. holder JSON).
-- Takes the lowest free slot among the first `limit` (SET NX PX); returns its index or -1.
local base, limit = ARGV[1], tonumber(ARGV[2])
for i = 0, limit - 1 do
  if redis.call('SET', base .. 'slot:' .. i, ARGV[4], 'NX', 'PX', ARGV[3]) then
    redis.call('SADD', base .. 'slots', i)
    return i
  end
end
return -1
