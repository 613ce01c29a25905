-- retry: ARGV = prefix, prompt_id, attempt, not_before, now. Fenced like finish: the running
-- attempt goes back to the head lane of its tier (not taken before not_before; queued_at = now).
-- Returns {lane, vstart}, or false when the attempt is not the current running one.
local pid = ARGV[2]
local jk = P .. 'job:' .. pid
local f = redis.call('HMGET', jk, 'state', 'attempt', 'server')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return false end
unrun(pid, f[3])
redis.call('HSET', jk, 'not_before', ARGV[4], 'queued_at', ARGV[5])
local lane, vstart = enqueue(pid, 'head', 0, 0)
return {lane, vstart}
