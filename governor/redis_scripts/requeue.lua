-- requeue: ARGV = prefix, prompt_id, tier, priority ('' = unchanged). A pending job re-enters the
-- fair-share lane of the tier as a new arrival of its client (FairScheduler.requeue); it keeps its
-- seq. Returns {lane, vstart}, or false when it is not pending.
local pid = ARGV[2]
if state_of(pid) ~= 'pending' then return false end
dequeue(pid)
local jk = P .. 'job:' .. pid
redis.call('HSET', jk, 'tier', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', jk, 'priority', ARGV[4]) end
local lane, vstart = enqueue(pid, 'fair', 1, 0)
return {lane, vstart}
