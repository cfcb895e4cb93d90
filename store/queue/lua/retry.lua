-- retryJob counts another delivery of a job about to run again (XCLAIM
-- without JUSTID), so a job that also crashes replicas is still given up
-- after MaxAttempts; only while the lease is ours, since a claim by a
-- holder that lost its lease would pull the job away from the new holder.
-- KEYS: lease, stream; ARGV: token, group, consumer, id. Returns -1 when
-- the lease is not ours, else how many jobs were claimed (0: no longer
-- pending).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return #redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4])
