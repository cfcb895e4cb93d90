-- acquireShard takes a shard's lease and moves every job earlier holders
-- left pending into our own pending list (XAUTOCLAIM from 0-0, which
-- counts a delivery for each: the crash or stop that left it counts as an
-- attempt). It runs none: next runs our pending list oldest first. A lease
-- already holding our token was taken by this very call, whose reply was
-- lost and which the client ran again: its take-over is done, and doing it
-- again would count every delivery twice. A missing group is created; on
-- any other error the lease is given back. Each holder leaves at most a job
-- or two pending per shard, so the loop is short. KEYS: lease, stream;
-- ARGV: token, ttl ms, group, consumer. Returns 0 when the lease is not
-- ours, else 1 plus the number of pending jobs found deleted from the
-- stream (Redis 7 drops them from the pending list as it claims).
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
  return 0
end
local start, vanished = '0-0', 0
repeat
  local r = redis.pcall('XAUTOCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, start, 'COUNT', 100)
  if r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[3], '0', 'MKSTREAM')
      return 1 + vanished
    end
    redis.call('DEL', KEYS[1])
    return r
  end
  start = r[1]
  if r[3] then vanished = vanished + #r[3] end
until start == '0-0'
return 1 + vanished
