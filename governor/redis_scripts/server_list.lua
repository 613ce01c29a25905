-- server_list: ARGV = prefix. Every registered server's hash (flat) followed by its heartbeat age in
-- ms (Redis clock); forgets servers whose hash expired (retention passed).
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'servers', 0, -1)) do
  local h = redis.call('HGETALL', P .. 'server:' .. id)
  if #h == 0 then
    redis.call('ZREM', P .. 'servers', id)
  else
    local score = tonumber(redis.call('ZSCORE', P .. 'servers', id))
    out[#out + 1] = {h, now - score}
  end
end
return out
