-- server_declare_dead: ARGV = prefix, server_id, timeout_ms. Marks the server dead if its last
-- heartbeat (Redis clock) is older than timeout_ms and it is not already marked: 1 for the one
-- caller that did it (and so requeues its jobs), 0 for everyone else.
local P, id = ARGV[1], ARGV[2]
local sk = P .. 'server:' .. id
local score = redis.call('ZSCORE', P .. 'servers', id)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if score and now - tonumber(score) <= tonumber(ARGV[3]) then return 0 end
if redis.call('EXISTS', sk) == 0 then
  -- never registered, or its record expired: a marker makes the answer 1 once per timeout
  if redis.call('SET', P .. 'declared:' .. id, '1', 'NX', 'PX', ARGV[3]) then return 1 end
  return 0
end
if redis.call('HGET', sk, 'state') == 'dead' then return 0 end
redis.call('HSET', sk, 'state', 'dead')
return 1
