-- page: ARGV = prefix, offset, limit. Pending jobs in dispatch order, each as a flat hash list
-- (without the payload field unless ARGV[4] == '1'). O(log n + limit).
local ids = redis.call('ZRANGE', P .. 'pending', tonumber(ARGV[2]), tonumber(ARGV[2]) + tonumber(ARGV[3]) - 1)
local out = {}
for _, m in ipairs(ids) do
  local jk = P .. 'job:' .. member_pid(m)
  if ARGV[4] == '1' then
    out[#out + 1] = redis.call('HGETALL', jk)
  else
    local names = redis.call('HKEYS', jk)
    local keep = {}
    for _, n in ipairs(names) do if n ~= 'payload' then keep[#keep + 1] = n end end
    local vals = redis.call('HMGET', jk, unpack(keep))
    local flat = {}
    for i, n in ipairs(keep) do flat[#flat + 1] = n; flat[#flat + 1] = vals[i] end
    out[#out + 1] = flat
  end
end
return out
