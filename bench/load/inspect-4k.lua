-- wrk script: POST /v1/inspect with a 4 KiB ordinary prompt (a pasted report and a
-- question about it) for one of 5,000 users: the cost of reading a long prompt, the
-- learned detector's windows included (scripts/load-bench.sh with INSPECT=inspect-4k.lua).
local paragraph = "The quarterly review covered revenue, hiring and the support backlog. "
  .. "Revenue grew in every region except the north, where two large customers delayed renewals until spring. "
  .. "Hiring stayed paused, and the team asked whether the two open roles could be filled before the holidays. "
  .. "The support backlog fell by a third after the new triage rota, though weekend response times are still slow. "
  .. "Marketing proposed moving part of the events budget to online workshops, which drew more sign-ups last year. "
local prompt = "Here are my notes from today's meeting:\\n\\n"
while #prompt < 4000 do
  prompt = prompt .. paragraph
end
prompt = prompt .. "\\n\\nCan you turn these notes into a short summary for the team, with the decisions first?"
local headers = { ["Content-Type"] = "application/json" }
local n = 0

request = function()
  n = n + 1
  local user = (n * 7919) % 5000
  local body = '{"user_id":"bench-user-' .. user .. '","prompt":"' .. prompt .. '"}'
  return wrk.format("POST", "/v1/inspect", headers, body)
end
