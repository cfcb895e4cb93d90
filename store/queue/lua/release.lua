-- releaseLease deletes the lease if it is still ours and returns how many
-- jobs the shard holds. KEYS: lease, stream; ARGV: token.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('XLEN', KEYS[2])
