-- page: ARGV = prefix, offset, limit, with_payload ('1' or '0'). Pending jobs in dispatch order,
-- each as a flat field/value list. O(log n + limit).
local first = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', P .. 'pending', first, first + tonumber(ARGV[3]) - 1)
local names = {'prompt_id', 'seq', 'fair_key', 'priority', 'tier', 'lane', 'vstart', 'queued_at', 'not_before',
               'classes', 'attempt', 'max_attempts', 'state', 'server'}
if ARGV[4] == '1' then names[#names + 1] = 'payload' end
local out = {}
for _, m in ipairs(ids) do
  local vals = redis.call('HMGET', P .. 'job:' .. member_pid(m), unpack(names))
  local flat = {}
  for i, n in ipairs(names) do
    if vals[i] then flat[#flat + 1] = n; flat[#flat + 1] = vals[i] end
  end
  out[#out + 1] = flat
end
return out
