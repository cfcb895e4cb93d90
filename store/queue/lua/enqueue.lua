-- enqueueClaimed sets every claim and adds the job in one step, or does
-- nothing when a claim is taken. KEYS: stream, claims…; ARGV: maxlen, key,
-- payload, TTL in ms per claim.
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return false end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[i + 2])
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'key', ARGV[2], 'payload', ARGV[3])
