-- position: ARGV = prefix, prompt_id. 0-based rank in the pending order (ZRANK, O(log n)), or false.
local m = redis.call('HGET', P .. 'job:' .. ARGV[2], 'member')
if (not m) or m == '' then return false end
return redis.call('ZRANK', P .. 'pending', m)
