-- finish: ARGV = prefix, prompt_id, attempt. Fenced: succeeds (1) only while that attempt is the
-- job's current running attempt; the job then leaves Redis's queue state. 0 otherwise.
local pid = ARGV[2]
local jk = P .. 'job:' .. pid
local f = redis.call('HMGET', jk, 'state', 'attempt', 'server')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
unrun(pid, f[3])
redis.call('DEL', jk)
return 1
