-- renewLease extends the lease if it is still ours, and marks the running
-- job as alive. KEYS: lease, stream; ARGV: token, ttl ms, job id or "",
-- group, consumer.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('XCLAIM', KEYS[2], ARGV[4], ARGV[5], 0, ARGV[3], 'JUSTID')
end
return 1
