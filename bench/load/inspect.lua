-- wrk script: POST /v1/inspect with a prompt from prompts.lua for one of 5,000 users.
package.path = package.path .. ";" .. (os.getenv("GODEL_BENCH_DIR") or "bench/load") .. "/?.lua"
local prompts = require("prompts")
local headers = { ["Content-Type"] = "application/json" }
local n = 0

request = function()
  n = n + 1
  local user = (n * 7919) % 5000
  local prompt = prompts[(n % #prompts) + 1]
  local body = '{"user_id":"bench-user-' .. user .. '","prompt":"' .. prompt .. '"}'
  return wrk.format("POST", "/v1/inspect", headers, body)
end
