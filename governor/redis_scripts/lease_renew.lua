-- lease_renew: ARGV = slot key base, ttl_ms, then slot/token pairs. Extends every slot still held
-- by its token; returns the slots that were lost (expired, or taken by another holder).
local lost = {}
for i = 3, #ARGV, 2 do
  local key = ARGV[1] .. 'slot:' .. ARGV[i]
  local v = redis.call('GET', key)
  if v and string.sub(v, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. '\n' then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
