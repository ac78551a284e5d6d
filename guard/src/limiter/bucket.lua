-- Token bucket and security debt for one (tier, analytical id), in one hash.
-- One script, run atomically by Redis, so any number of guard pods share one limit.
-- Time comes from Redis TIME: pods with skewed clocks still agree.
--
-- KEYS[1]  godel:rl:{<tier>:<analytical id>}   (hash tag: one Cluster slot)
-- ARGV[1]  "admit" (take a token unless quarantined) or "debt" (add debt points)
-- ARGV[2]  refill rate, tokens per second      ARGV[3]  burst (bucket size)
-- ARGV[4]  debt half-life, seconds             ARGV[5]  quarantine threshold
-- ARGV[6]  debt points to add ("debt" only)
-- Returns  {allowed 0|1, whole tokens left, retry after ms, quarantined 0|1}

local key = KEYS[1]
local op = ARGV[1]
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local half_life = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5])
local points = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local state = redis.call('HMGET', key, 'tokens', 'ts', 'debt', 'dts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
local debt = tonumber(state[3]) or 0
local dts = tonumber(state[4]) or now

local fresh = tokens == nil or ts == nil
if fresh then
  tokens = burst
  ts = now
end
if debt > 0 then
  debt = debt * math.pow(0.5, math.max(0, now - dts) / 1000 / half_life)
  if debt < 0.01 then debt = 0 end
end

local allowed, retry_ms, quarantined = 0, 0, 0
if op == 'debt' then
  debt = debt + points
else
  tokens = math.min(burst, tokens + math.max(0, now - ts) / 1000 * rate)
  ts = now
  if debt > threshold then
    quarantined = 1
    retry_ms = math.ceil(half_life * math.log(debt / threshold) / math.log(2) * 1000)
  elseif tokens >= 1 then
    allowed = 1
    tokens = tokens - 1
  else
    retry_ms = math.ceil((1 - tokens) / rate * 1000)
  end
end

-- Expire once the bucket would be full again and the debt gone: idle users cost nothing.
-- A "debt" call knows no tier limits, so it only ever extends the bucket's expiry.
local keep_ms
if op == 'debt' then
  keep_ms = math.max(redis.call('PTTL', key), 0)
else
  keep_ms = (burst - tokens) / rate * 1000 + 1000
end
if debt > 0 then
  keep_ms = math.max(keep_ms, half_life * math.log(debt / 0.01) / math.log(2) * 1000 + 1000)
end
if op == 'debt' and fresh then
  -- No bucket yet: leave it to the next "admit", which knows the tier's burst.
  redis.call('HSET', key, 'debt', tostring(debt), 'dts', now)
else
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', ts, 'debt', tostring(debt), 'dts', now)
end
redis.call('PEXPIRE', key, math.ceil(keep_ms))
return {allowed, math.floor(tokens), retry_ms, quarantined}
