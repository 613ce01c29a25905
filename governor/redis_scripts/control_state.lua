-- control_state: ARGV = prefix, state (JSON text, e.g. '"paused"'), now. Sets the cluster's
-- dispatch state in the control record (and bumps its version). Pausing records ``paused_since``
-- (the first pause only); leaving the pause moves every pending job's clock by the time it was
-- held -- ``queued_at``, its ``deadlines`` entry and its aging entry -- so each keeps the queue
-- time it had left when the pause began (one queued during the pause: its whole timeout).
-- O(pending) once per resume (measured 12-24 us a job: 0.12-0.24 s for 10,000 on a loaded 2-core
-- box). Atomic, and done once: the first server to resume consumes ``paused_since``; a second
-- resume finds none. Returns the seconds held (0 if none).
local state, now = ARGV[2], tonumber(ARGV[3])
local ck = P .. 'control'
local held = 0
if state == '"paused"' then
  redis.call('HSETNX', ck, 'paused_since', ARGV[3])
else
  local since = redis.call('HGET', ck, 'paused_since')
  if since then
    redis.call('HDEL', ck, 'paused_since')
    held = now - tonumber(since)
  end
  if held > 0 then
    for _, m in ipairs(redis.call('ZRANGE', P .. 'pending', 0, -1)) do
      local pid = member_pid(m)
      local jk = P .. 'job:' .. pid
      local f = redis.call('HMGET', jk, 'queued_at', 'queue_timeout', 'priority', 'tier', 'seq')
      -- held since the pause began, or since it was queued (admitted or requeued during the pause)
      local queued = tonumber(f[1])
      queued = queued + math.max(0, math.min(held, now - queued))
      redis.call('HSET', jk, 'queued_at', string.format('%.17g', queued))
      local qt = tonumber(f[2] or '0') or 0
      if qt > 0 then redis.call('ZADD', P .. 'deadlines', queued + qt, pid) end
      local tier = tonumber(f[4])
      if tier > 0 then
        redis.call('ZADD', P .. 'aging:' .. aging_steps(tonumber(f[3]), tier), queued,
          aging_member(tonumber(f[5]), pid))
      end
    end
  else
    held = 0
  end
end
redis.call('HSET', ck, 'state', state)
redis.call('HINCRBY', ck, 'version', 1)
return tostring(held)
