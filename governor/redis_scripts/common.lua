-- Shared helpers, prepended to every queue script (EVAL has no shared libraries; Functions are
-- Redis 7 only). ARGV[1] is the key prefix "rg:{cluster}:"; every key below starts with it, so all
-- of one cluster's keys share the hash tag {cluster}.
local P = ARGV[1]
local KEY_WIDTH = 32 -- member = tier(1) lane(1) vstart(15) seq(15) then the prompt id

local function int(x)
  return string.format('%d', x)
end

local function sort_key(tier, lane, vstart, seq)
  return string.format('%1d%1d%015d%015d', tier, lane, vstart, seq)
end

local function member_pid(m)
  return string.sub(m, KEY_WIDTH + 1)
end

-- true when member a runs before member b (numeric, so no locale collation is involved)
local function before(a, b)
  local cuts = {{1, 1}, {2, 2}, {3, 17}, {18, 32}}
  for _, c in ipairs(cuts) do
    local x, y = tonumber(string.sub(a, c[1], c[2])), tonumber(string.sub(b, c[1], c[2]))
    if x ~= y then return x < y end
  end
  return false
end

local function aging_member(seq, pid)
  return string.format('%015d', seq) .. pid
end

local function aging_steps(priority, tier)
  local steps = priority - tier + 1
  if steps < 1 then steps = 1 elseif steps > 3 then steps = 3 end
  return steps
end

-- Fair-share tags exactly as FairScheduler.push: 'head', 'fair' or 'keep' (restore given tags).
local function assign_tags(tier, fair_key, mode, lane, vstart)
  if mode == 'head' then
    return 0, redis.call('INCR', P .. 'headctr')
  end
  local fin = P .. 'fin:' .. tier
  if mode == 'fair' then
    local v = tonumber(redis.call('HGET', P .. 'vt', tier) or '0')
    local f = tonumber(redis.call('HGET', fin, fair_key) or '0')
    local start = math.max(v, f)
    redis.call('HSET', fin, fair_key, int(start + 1))
    return 1, start
  end
  if lane == 0 then
    if vstart > tonumber(redis.call('GET', P .. 'headctr') or '0') then
      redis.call('SET', P .. 'headctr', int(vstart))
    end
  else
    local f = tonumber(redis.call('HGET', fin, fair_key) or '0')
    if vstart + 1 > f then redis.call('HSET', fin, fair_key, int(vstart + 1)) end
    local v = redis.call('HGET', P .. 'vt', tier)
    if (not v) or vstart < tonumber(v) then redis.call('HSET', P .. 'vt', tier, int(vstart)) end
  end
  return lane, vstart
end

-- Put the job (its hash already written) into the pending order, its class queue and the aging index.
local function enqueue(pid, mode, lane, vstart)
  local jk = P .. 'job:' .. pid
  local f = redis.call('HMGET', jk, 'tier', 'fair_key', 'seq', 'sig', 'queued_at', 'priority', 'classes')
  local tier, seq = tonumber(f[1]), tonumber(f[3])
  lane, vstart = assign_tags(tier, f[2], mode, lane, vstart)
  local member = sort_key(tier, lane, vstart, seq) .. pid
  redis.call('ZADD', P .. 'pending', 0, member)
  redis.call('ZADD', P .. 'q:' .. f[4], 0, member)
  redis.call('HSETNX', P .. 'sigs', f[4], f[7])
  if tier > 0 then
    redis.call('ZADD', P .. 'aging:' .. aging_steps(tonumber(f[6]), tier), f[5], aging_member(seq, pid))
  end
  redis.call('HSET', jk, 'lane', lane, 'vstart', int(vstart), 'member', member, 'state', 'pending', 'server', '')
  redis.call('HINCRBY', P .. 'clients', f[2], 1) -- pending jobs per client (admission caps)
  local qt = tonumber(redis.call('HGET', jk, 'queue_timeout') or '0') or 0
  if qt > 0 then redis.call('ZADD', P .. 'deadlines', tonumber(f[5]) + qt, pid) end -- queue timeout
  return lane, vstart
end

-- Take a pending job out of every index (its hash stays).
local function dequeue(pid)
  local jk = P .. 'job:' .. pid
  local f = redis.call('HMGET', jk, 'member', 'sig', 'tier', 'priority', 'seq', 'fair_key')
  if redis.call('ZREM', P .. 'pending', f[1]) == 1 and f[6] then
    if redis.call('HINCRBY', P .. 'clients', f[6], -1) <= 0 then redis.call('HDEL', P .. 'clients', f[6]) end
  end
  local qk = P .. 'q:' .. f[2]
  redis.call('ZREM', qk, f[1])
  if redis.call('EXISTS', qk) == 0 then redis.call('HDEL', P .. 'sigs', f[2]) end
  redis.call('ZREM', P .. 'deadlines', pid)
  local tier = tonumber(f[3])
  if tier > 0 then
    redis.call('ZREM', P .. 'aging:' .. aging_steps(tonumber(f[4]), tier), aging_member(tonumber(f[5]), pid))
  end
end

local function state_of(pid)
  return redis.call('HGET', P .. 'job:' .. pid, 'state')
end

-- A running job leaves the running registry (fencing is checked by the caller).
local function unrun(pid, server)
  redis.call('HDEL', P .. 'running', pid)
  redis.call('SREM', P .. 'srv:' .. server .. ':running', pid)
end
