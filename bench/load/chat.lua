-- wrk script: POST /v1/chat/completions (through the guard's proxy, or straight to the
-- upstream as the baseline) for one of 5,000 users, ordinary prompts only: a blocked
-- prompt would never reach the upstream and flatter the proxy. The model is one whose
-- tokenizer the guard ships, so token limits count prompts exactly.
package.path = package.path .. ";" .. (os.getenv("GODEL_BENCH_DIR") or "bench/load") .. "/?.lua"
local prompts = require("prompts")
local n = 0

request = function()
  n = n + 1
  local user = (n * 7919) % 5000
  local prompt = prompts[(n % 8) + 1]
  local body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"' .. prompt .. '"}]}'
  local headers = { ["Content-Type"] = "application/json", ["x-godel-user"] = "bench-user-" .. user }
  return wrk.format("POST", "/v1/chat/completions", headers, body)
end
