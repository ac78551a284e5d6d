-- Concurrent-stream leases of one user, atomically: a sorted set of lease ids scored by
-- when each expires, in the user's hash-tagged key space, so a Redis Cluster keeps it on
-- the user's slot. A guard that dies leaks nothing: its leases expire.
--
-- KEYS[1]  godel:rl:{<tier>:<analytical id>}:streams
-- ARGV[1]  "open" or "close"
-- ARGV[2]  the lease id (the request id)
-- ARGV[3]  the cap (open)
-- ARGV[4]  the lease's lifetime in ms (open)
-- Returns 1 when the lease is held (open) or gone (close), 0 when the cap is reached.
local key = KEYS[1]
if ARGV[1] == 'close' then
  redis.call('ZREM', key, ARGV[2])
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', key, now + ttl, ARGV[2])
redis.call('PEXPIRE', key, ttl)
return 1
