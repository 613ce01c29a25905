-- push: ARGV = prefix, prompt_id, mode (fair|head|keep), seq ('' = assign), lane, vstart, then
-- field/value pairs for the job hash. Returns {seq, lane, vstart}, or false if already known.
local pid, mode = ARGV[2], ARGV[3]
local jk = P .. 'job:' .. pid
if redis.call('EXISTS', jk) == 1 then return false end
local seq
if ARGV[4] == '' then
  seq = redis.call('INCR', P .. 'seq')
else
  seq = tonumber(ARGV[4])
  if seq > tonumber(redis.call('GET', P .. 'seq') or '0') then redis.call('SET', P .. 'seq', int(seq)) end
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', jk, 'prompt_id', pid, 'seq', int(seq), unpack(fields))
local origin = redis.call('HGET', jk, 'origin_server')
if origin then -- where the job came from stays readable after it ended (ClusterContext.origin_of)
  redis.call('HSET', P .. 'where:' .. pid, 'origin_server', origin)
  redis.call('PEXPIRE', P .. 'where:' .. pid, 604800000)
end
local lane, vstart = enqueue(pid, mode, tonumber(ARGV[5]), tonumber(ARGV[6]))
return {seq, lane, vstart}
