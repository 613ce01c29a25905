-- take: ARGV = prefix, server_id, server classes set key ('' = runs every class), now, then
-- optionally mode ('peek': return the job that would be taken, change nothing) and the expected
-- prompt id (take only if it is still the one chosen; else false: the order changed since the peek).
-- Picks the first pending job in dispatch order whose not_before <= now and whose node classes are
-- all members of the server's set; dispatches it (advances its tier's virtual time, as
-- FairScheduler.mark_dispatched), bumps its attempt and marks it running on the server.
-- Returns the job hash as a flat list, or false (also while the cluster is paused: control state).
-- Cost: one head look-up per class signature.
local server, classes_key, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
-- a cluster paused through any server takes effect at once, not at each server's next poll
if redis.call('HGET', P .. 'control', 'state') == '"paused"' then return false end
local sigs = redis.call('HGETALL', P .. 'sigs')
local candidates = {}
for i = 1, #sigs, 2 do
  local qk, start, found = P .. 'q:' .. sigs[i], 0, nil
  while not found do
    local batch = redis.call('ZRANGE', qk, start, start + 15)
    if #batch == 0 then break end
    for _, m in ipairs(batch) do
      if tonumber(redis.call('HGET', P .. 'job:' .. member_pid(m), 'not_before') or '0') <= now then
        found = m
        break
      end
    end
    start = start + 16
  end
  if found then candidates[#candidates + 1] = {found, sigs[i + 1]} end
end
table.sort(candidates, function(a, b) return before(a[1], b[1]) end)
local chosen = nil
for _, c in ipairs(candidates) do
  local ok = true
  if classes_key ~= '' and c[2] ~= '' then
    local names = {}
    for name in string.gmatch(c[2], '[^\n]+') do names[#names + 1] = name end
    for _, hit in ipairs(redis.call('SMISMEMBER', classes_key, unpack(names))) do
      if hit == 0 then ok = false break end
    end
  end
  if ok then chosen = c[1] break end
end
if not chosen then return false end
local pid = member_pid(chosen)
local jk = P .. 'job:' .. pid
if ARGV[5] == 'peek' then return redis.call('HGETALL', jk) end
if ARGV[6] and ARGV[6] ~= '' and ARGV[6] ~= pid then return false end
dequeue(pid)
local f = redis.call('HMGET', jk, 'lane', 'tier', 'vstart')
if tonumber(f[1]) == 1 then
  local v = redis.call('HGET', P .. 'vt', f[2])
  if (not v) or tonumber(f[3]) > tonumber(v) then redis.call('HSET', P .. 'vt', f[2], f[3]) end
  if redis.call('ZCARD', P .. 'pending') == 0 then
    -- prune client tags that can no longer matter (at or below their tier's V)
    local vt = redis.call('HGETALL', P .. 'vt')
    for i = 1, #vt, 2 do
      local fin, v = P .. 'fin:' .. vt[i], tonumber(vt[i + 1])
      local tags = redis.call('HGETALL', fin)
      for j = 1, #tags, 2 do
        if tonumber(tags[j + 1]) <= v then redis.call('HDEL', fin, tags[j]) end
      end
    end
  end
end
redis.call('HINCRBY', jk, 'attempt', 1)
redis.call('HSET', jk, 'state', 'running', 'server', server, 'started_at', ARGV[4], 'member', '')
redis.call('HSET', P .. 'running', pid, server)
redis.call('SADD', P .. 'srv:' .. server .. ':running', pid)
redis.call('HSET', P .. 'where:' .. pid, 'server', server)
redis.call('PEXPIRE', P .. 'where:' .. pid, 604800000)
return redis.call('HGETALL', jk)
