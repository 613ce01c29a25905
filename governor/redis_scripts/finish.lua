-- finish: ARGV = prefix, prompt_id, attempt[, summary JSON[, retry JSON]]. Fenced: succeeds (1) only
-- while that attempt is the job's current running attempt; the job then leaves Redis's queue state
-- and its final summary (and what a retry needs) is kept in where:<prompt_id> for 7 days. 0 otherwise.
local pid = ARGV[2]
local jk = P .. 'job:' .. pid
local f = redis.call('HMGET', jk, 'state', 'attempt', 'server')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
unrun(pid, f[3])
redis.call('DEL', jk)
local wk = P .. 'where:' .. pid
if ARGV[4] and ARGV[4] ~= '' then redis.call('HSET', wk, 'summary', ARGV[4]) end
if ARGV[5] and ARGV[5] ~= '' then redis.call('HSET', wk, 'retry', ARGV[5]) end
if ARGV[4] and ARGV[4] ~= '' then redis.call('PEXPIRE', wk, 604800000) end
return 1
