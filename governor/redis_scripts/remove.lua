-- remove: ARGV = prefix, prompt_id. Deletes a pending job; returns its hash, or false when it is
-- not pending (unknown, running or finished).
local pid = ARGV[2]
if state_of(pid) ~= 'pending' then return false end
dequeue(pid)
local jk = P .. 'job:' .. pid
local job = redis.call('HGETALL', jk)
redis.call('DEL', jk)
return job
