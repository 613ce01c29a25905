-- promote: ARGV = prefix, now, aging_interval. Every pending job whose wait earned it a higher tier
-- moves up one tier per interval, as a new arrival there, in (promote_at, seq) order exactly as
-- FairScheduler.promote_aged. Returns the promoted prompt ids in promotion order (one per step).
local now, interval = tonumber(ARGV[2]), tonumber(ARGV[3])
local promoted = {}
if interval <= 0 then return promoted end
while true do
  local best, best_at, best_seq = nil, nil, nil
  for steps = 1, 3 do
    local head = redis.call('ZRANGE', P .. 'aging:' .. steps, 0, 0)
    if #head > 0 then
      local pid = string.sub(head[1], 16)
      local at = tonumber(redis.call('HGET', P .. 'job:' .. pid, 'queued_at')) + steps * interval
      local seq = tonumber(string.sub(head[1], 1, 15))
      if at <= now and (best == nil or at < best_at or (at == best_at and seq < best_seq)) then
        best, best_at, best_seq = pid, at, seq
      end
    end
  end
  if best == nil then break end
  dequeue(best)
  redis.call('HINCRBY', P .. 'job:' .. best, 'tier', -1)
  enqueue(best, 'fair', 1, 0)
  promoted[#promoted + 1] = best
end
return promoted
