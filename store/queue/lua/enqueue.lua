-- enqueueClaimed sets every claim and adds the job in one step, or does
-- nothing when a claim is taken. With ARGV[1] "full" (the queue holds
-- MaxPending jobs) it sets the claims and adds nothing, so a redelivery of
-- the event is a duplicate while the caller answers with a busy card.
-- KEYS: stream, claims…; ARGV: "add" or "full", key, payload, TTL in ms
-- per claim. Returns false when a claim was taken, "full" when nothing
-- was added, else the new entry's id. No MAXLEN: a recorded job is never
-- trimmed away unanswered.
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return false end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[i + 2])
end
if ARGV[1] == 'full' then return 'full' end
return redis.call('XADD', KEYS[1], '*', 'key', ARGV[2], 'payload', ARGV[3])
