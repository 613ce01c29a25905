-- lease_list: ARGV = slot key base, limit. Held slots among the first `limit` and any used before,
-- as {slot, value, pttl_ms} triples; forgets used slot numbers at or above limit that are free.
local base, limit = ARGV[1], tonumber(ARGV[2])
local seen, out = {}, {}
local function look(i)
  if seen[i] then return end
  seen[i] = true
  local key = base .. 'slot:' .. i
  local v = redis.call('GET', key)
  if v then
    out[#out + 1] = {i, v, redis.call('PTTL', key)}
  elseif i >= limit then
    redis.call('SREM', base .. 'slots', i)
  end
end
for i = 0, limit - 1 do look(i) end
for _, s in ipairs(redis.call('SMEMBERS', base .. 'slots')) do look(tonumber(s)) end
table.sort(out, function(a, b) return a[1] < b[1] end)
return out
