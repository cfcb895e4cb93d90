-- nextJob acknowledges and deletes the job just done (ARGV[4], if any),
-- then, if the lease is still ours, returns the oldest job of our pending
-- list, or moves the next new one into it (XREADGROUP >, one at a time)
-- and returns that. Never running what a read returned unless it is the
-- oldest pending keeps the order when a reply is lost and the client runs
-- the script again: the job read by the lost call is returned by the
-- retry, since it is now the oldest pending one. KEYS: lease, stream;
-- ARGV: token, group, consumer, done id. Returns 0 when the lease is not
-- ours, 1 when the shard is empty, else {id, deliveries[, fields]} (no
-- fields: the job vanished from the stream while pending).
if ARGV[4] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[4])
  redis.call('XDEL', KEYS[2], ARGV[4])
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
-- pcall, returning the error itself: before Redis 7 an error raised by
-- call() reaches the client wrapped, and NOGROUP would not be recognised.
local p = redis.pcall('XPENDING', KEYS[2], ARGV[2], '-', '+', 1, ARGV[3])
if p.err then return p end
if #p == 0 then
  local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', 1, 'STREAMS', KEYS[2], '>')
  if type(r) == 'table' and r.err then return r end
  if not r then return 1 end
  local m = r[1][2][1]
  return {m[1], 1, m[2]}
end
local m = redis.call('XRANGE', KEYS[2], p[1][1], p[1][1])
if #m == 0 then return {p[1][1], p[1][4]} end
return {p[1][1], p[1][4], m[1][2]}
