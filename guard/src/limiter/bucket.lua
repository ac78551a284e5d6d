-- Request bucket, usage meters and security debt for one (tier, analytical id), in one
-- hash. One script, run atomically by Redis, so any number of guard pods share one limit.
-- Time comes from Redis TIME: pods with skewed clocks still agree.
--
-- KEYS[1]  godel:rl:{<tier>:<analytical id>}   (hash tag: one Cluster slot)
-- ARGV[1]  "admit" (take a request and charge the meters unless refused), "debt" (add
--          debt points) or "settle" (add to the meters what the reservation missed)
-- ARGV[2]  refill rate, requests per second    ARGV[3]  burst (bucket size)
-- ARGV[4]  debt half-life, seconds             ARGV[5]  quarantine threshold
-- ARGV[6]  debt points to add ("debt"; "admit" adds them before it decides: the pod's
--          pending debt); "settle" reads none of ARGV[2..9]
-- ARGV[7]  lease: requests to take beyond this one for the pod to admit on its own
--          ("admit" only; the guard asks for none on a tier with usage meters); granted
--          only from a bucket at least ARGV[8] times that full and to a user under half
--          the quarantine threshold
-- ARGV[8]  lease divisor (twice the fleet size: no pod leases more than its share)
-- ARGV[9]  requests of an expired lease the pod did not use, given back ("admit" only)
-- ARGV[10] number of usage meters, then four values for each: its field, its cap, its
--          window in seconds (a whole window drains a cap) and its charge
-- Returns  {allowed 0|1, whole requests left, retry after ms, why, lease granted, debt},
--          why one of "", "rate_limited", "quarantined" or the field of the full meter;
--          the debt in whole points

local key = KEYS[1]
local op = ARGV[1]
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local half_life = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5])
local points = tonumber(ARGV[6]) or 0
local want = tonumber(ARGV[7]) or 0
local divisor = math.max(1, tonumber(ARGV[8]) or 1)
local given = tonumber(ARGV[9]) or 0
local n = tonumber(ARGV[10]) or 0

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- One read of every field this call needs: the bucket, the debt, each meter's level and
-- when it was drained.
local names = {'tokens', 'ts', 'debt', 'dts'}
local meters = {}
for i = 1, n do
  local base = 10 + (i - 1) * 4
  meters[i] = {field = ARGV[base + 1], cap = tonumber(ARGV[base + 2]),
               window = tonumber(ARGV[base + 3]), charge = tonumber(ARGV[base + 4])}
  names[4 + 2 * i - 1] = meters[i].field
  names[4 + 2 * i] = meters[i].field .. 't'
end
local state = redis.call('HMGET', key, unpack(names))
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
local debt = tonumber(state[3]) or 0
local dts = tonumber(state[4]) or now

-- Each meter's level, drained to now.
for i, m in ipairs(meters) do
  local level = tonumber(state[4 + 2 * i - 1]) or 0
  local at = tonumber(state[4 + 2 * i]) or now
  m.level = math.max(0, level - math.max(0, now - at) / 1000 * m.cap / m.window)
end

local fresh = tokens == nil or ts == nil
if fresh then
  tokens = burst
  ts = now
end
if op == 'settle' then
  -- "settle" knows no debt policy: it leaves the debt, and the expiry that covers it, alone.
  debt = 0
elseif debt > 0 then
  debt = debt * math.pow(0.5, math.max(0, now - dts) / 1000 / half_life)
  if debt < 0.01 then debt = 0 end
end

local allowed, retry_ms, why, granted = 0, 0, '', 0
if op == 'settle' then
  for _, m in ipairs(meters) do
    m.level = math.max(0, m.level + m.charge)
  end
else
  debt = debt + points
end
if op == 'admit' then
  if fresh then
    -- A bucket that expired was full: an old lease's remainder has nothing to go back to.
    given = 0
  end
  tokens = math.min(burst, tokens + math.max(0, now - ts) / 1000 * rate + given)
  ts = now
  if debt > threshold then
    why = 'quarantined'
    retry_ms = math.ceil(half_life * math.log(debt / threshold) / math.log(2) * 1000)
  elseif tokens < 1 then
    why = 'rate_limited'
    retry_ms = math.ceil((1 - tokens) / rate * 1000)
  else
    for _, m in ipairs(meters) do
      if m.level >= m.cap then
        local wait = math.ceil((m.level - m.cap) * m.window / m.cap * 1000) + 1
        if wait > retry_ms then
          why = m.field
          retry_ms = wait
        end
      end
    end
    if why == '' then
      allowed = 1
      tokens = tokens - 1
      for _, m in ipairs(meters) do
        m.level = m.level + m.charge
      end
      if want > 0 and debt <= threshold / 2 then
        granted = math.max(0, math.min(want, math.floor(tokens / divisor)))
        tokens = tokens - granted
      end
    end
  end
end

-- Expire once the bucket would be full again, the meters empty and the debt gone: idle
-- users cost nothing. "debt" and "settle" know no bucket limits, so they only ever
-- extend the key's expiry.
local keep_ms
if op == 'admit' then
  keep_ms = (burst - tokens) / rate * 1000 + 1000
else
  keep_ms = math.max(redis.call('PTTL', key), 0)
end
for _, m in ipairs(meters) do
  keep_ms = math.max(keep_ms, m.level / m.cap * m.window * 1000 + 1000)
end
if debt > 0 then
  keep_ms = math.max(keep_ms, half_life * math.log(debt / 0.01) / math.log(2) * 1000 + 1000)
end

local fields = {}
if op == 'admit' or not fresh then
  -- No bucket yet on "debt" or "settle": leave it to the next "admit", which knows the
  -- tier's burst.
  table.insert(fields, 'tokens'); table.insert(fields, tostring(tokens))
  table.insert(fields, 'ts'); table.insert(fields, ts)
end
if op ~= 'settle' then
  table.insert(fields, 'debt'); table.insert(fields, tostring(debt))
  table.insert(fields, 'dts'); table.insert(fields, now)
end
for _, m in ipairs(meters) do
  table.insert(fields, m.field); table.insert(fields, tostring(m.level))
  table.insert(fields, m.field .. 't'); table.insert(fields, now)
end
if #fields > 0 then
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIRE', key, math.ceil(keep_ms))
end
return {allowed, math.floor(tokens), retry_ms, why, granted, math.floor(debt)}
