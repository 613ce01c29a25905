-- requeue_running: ARGV = prefix, server_id, now. Every job still running on that server goes back
-- to the head lane of its tier (in seq order) for its next attempt, queued_at = now, not_before = 0;
-- a job whose attempt has reached its max_attempts (> 0) is deleted instead. Idempotent.
-- Returns {requeued hashes, exhausted hashes}.
local server = ARGV[2]
local sk = P .. 'srv:' .. server .. ':running'
local pids = redis.call('SMEMBERS', sk)
local jobs = {}
for _, pid in ipairs(pids) do
  local f = redis.call('HMGET', P .. 'job:' .. pid, 'state', 'server', 'seq')
  if f[1] == 'running' and f[2] == server then
    jobs[#jobs + 1] = {pid, tonumber(f[3])}
  else
    redis.call('SREM', sk, pid)
  end
end
table.sort(jobs, function(a, b) return a[2] < b[2] end)
local requeued, exhausted = {}, {}
for _, j in ipairs(jobs) do
  local pid = j[1]
  local jk = P .. 'job:' .. pid
  unrun(pid, server)
  local f = redis.call('HMGET', jk, 'attempt', 'max_attempts')
  local cap = tonumber(f[2] or '0')
  if cap > 0 and tonumber(f[1]) >= cap then
    exhausted[#exhausted + 1] = redis.call('HGETALL', jk)
    redis.call('DEL', jk)
  else
    redis.call('HSET', jk, 'not_before', '0', 'queued_at', ARGV[3])
    enqueue(pid, 'head', 0, 0)
    requeued[#requeued + 1] = redis.call('HGETALL', jk)
  end
end
return {requeued, exhausted}
