-- wrk script for scripts/memory-bench.sh: every request from a new user.
local headers = { ["Content-Type"] = "application/json" }
-- Set per wrk run by the script, so that every run brings new users.
local run = os.getenv("GODEL_RUN") or "0"
local thread_id = 0
local n = 0

setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

request = function()
  n = n + 1
  local body = '{"user_id":"memory-user-' .. run .. '-' .. thread_id .. '-' .. n .. '","prompt":"hello there"}'
  return wrk.format("POST", "/v1/inspect", headers, body)
end
