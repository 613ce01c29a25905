-- server_beat: ARGV = prefix, server_id, retention_ms, then field/value pairs for the server hash.
-- Stamps the heartbeat with Redis's own clock (one clock for every host), keeps the server hash and
-- its classes set for retention_ms (a server marked dead that beats again is 'running'), and returns {previous heartbeat age in ms or -1, was declared dead}.
local P, id = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sk = P .. 'server:' .. id
local prev = redis.call('HMGET', sk, 'heartbeat_ms', 'state')
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then redis.call('HSET', sk, unpack(fields)) end
redis.call('HSET', sk, 'server_id', id, 'heartbeat_ms', string.format('%d', now))
if redis.call('HGET', sk, 'state') == 'dead' then redis.call('HSET', sk, 'state', 'running') end
redis.call('ZADD', P .. 'servers', now, id)
redis.call('PEXPIRE', sk, ARGV[3])
local ck = redis.call('HGET', sk, 'classes_key')
if ck then redis.call('PEXPIRE', ck, ARGV[3]) end
local age = -1
if prev[1] then age = now - tonumber(prev[1]) end
return {age, prev[2] == 'dead' and 1 or 0}
