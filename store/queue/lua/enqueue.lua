-- enqueueClaimed sets every claim and adds the job in one step, or does
-- nothing when a claim is taken. With ARGV[1] "full" (the queue holds
-- MaxPending jobs) it adds nothing and sets no claim: the caller answers
-- with a busy card, or asks Feishu to redeliver, and either way nothing is
-- left for a redelivery to be mistaken for a duplicate of.
-- KEYS: stream, claims…; ARGV: "add" or "full", key, payload, TTL in ms
-- per claim. Returns false when a claim was taken, "full" when nothing
-- was added, else the new entry's id. No MAXLEN: a recorded job is never
-- trimmed away unanswered.
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return false end
end
if ARGV[1] == 'full' then return 'full' end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[i + 2])
end
return redis.call('XADD', KEYS[1], '*', 'key', ARGV[2], 'payload', ARGV[3])
