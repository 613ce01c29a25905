-- expire: ARGV = prefix, now, limit. Deletes up to ``limit`` pending jobs whose queue timeout passed
-- (``deadlines`` score <= now) and returns their hashes (flat lists). Nothing expires while the
-- cluster is paused (``paused_since`` in the control record): the clock is held. Atomic, so a job
-- expires once, on the server whose call removes it, and never after a resume moved its deadline.
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local control = redis.call('HMGET', P .. 'control', 'paused_since', 'state')
if control[1] or control[2] == '"paused"' then return out end
for _, pid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', now, 'LIMIT', 0, limit)) do
  if state_of(pid) == 'pending' then
    dequeue(pid)
    local jk = P .. 'job:' .. pid
    out[#out + 1] = redis.call('HGETALL', jk)
    redis.call('DEL', jk)
  else
    redis.call('ZREM', P .. 'deadlines', pid)
  end
end
return out
