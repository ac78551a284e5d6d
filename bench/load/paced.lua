-- wrk script: another script of this directory (GODEL_PACED_SCRIPT) at a fixed pace,
-- each connection waiting GODEL_PACE_MS between its requests, so a run offers a set rate
-- (connections / pace) instead of as many requests as the server takes.
local dir = os.getenv("GODEL_BENCH_DIR") or "bench/load"
dofile(dir .. "/" .. os.getenv("GODEL_PACED_SCRIPT"))
local pace = tonumber(os.getenv("GODEL_PACE_MS"))

delay = function()
  return pace
end
