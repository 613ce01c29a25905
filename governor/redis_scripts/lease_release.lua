-- lease_release: ARGV = slot key base, slot, token. Deletes the slot only if this token holds it.
local key = ARGV[1] .. 'slot:' .. ARGV[2]
local v = redis.call('GET', key)
if v and string.sub(v, 1, #ARGV[3] + 1) == ARGV[3] .. '\n' then
  redis.call('DEL', key)
  return 1
end
return 0
