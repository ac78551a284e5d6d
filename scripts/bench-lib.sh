# Helpers the load benchmarks share (sourced by load-bench.sh and compare.sh): a work
# directory removed on exit, background servers on free loopback ports that are stopped
# on exit, and a process's CPU time.

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1; its log:" >&2
  cat "$work/$1.log" >&2
  exit 1
}

start() { # start <port> <command...>: runs it in the background, waits for the port
  local port="$1"; shift
  "$@" >"$work/$port.log" 2>&1 &
  pids+=("$!")
  wait_port "$port"
}

stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

# CPU seconds a process has used, user and system, from /proc.
cpu_seconds() { # cpu_seconds <pid>
  awk -v tck="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / tck }' "/proc/$1/stat"
}

# wrk's report (on stdin, run with --latency) as "req/s p50_ms p99_ms non2xx requests".
wrk_figures() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    / requests in / { n = $1 }
    /Non-2xx/ { non2xx = $NF }
    END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, non2xx, n }'
}
