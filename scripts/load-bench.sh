#!/usr/bin/env bash
# The HTTP path under load (`just load-bench`): the guard against a bare axum endpoint
# (guard/examples/bare.rs: same axum, hyper and runtime settings, parses the same JSON,
# answers a fixed verdict), driven by wrk with the same load (2 threads, 16 connections,
# mixed prompts over 5,000 users: bench/load/*.lua), in three configurations:
#   memory  the in-memory limiter, every trap on (the learned detector included)
#   redis   the Redis limiter on a local redis-server (admission leases on: the default)
#   redis-unleased
#           the same with `leaseMs: 0`: one script call per request, as before leases
#   proxy   the OpenAI proxy in front of a local upstream that answers at once
#           (guard/examples/upstream.rs), against that upstream called directly
#   redis-tokens, proxy-tokens
#           the same with token limits on (tokens per minute and per day, never
#           reached): every request reserves its tokens in the same Lua call, and the
#           proxy settles each to the upstream's usage
#   memory-traced, proxy-traced
#           the same with traces on: every request's spans exported over OTLP/HTTP to a
#           local Jaeger (scripts/control-plane.sh builds it; on PATH or in JAEGER),
#           sampling ratio 1, sharing the cores like the rest
# Prints req/s and p50/p99 for each side and the ratio. The load generator shares the
# machine's cores with the servers, as in the issue's measurement; runs are noisy, so
# compare ratios from one run. Options: RUNS (default 2), DURATION (default 10s),
# CONFIGS (default "memory redis proxy"), INSPECT (the /v1/inspect script in bench/load,
# default inspect.lua; inspect-4k.lua sends one 4 KiB prompt), GUARD (another build's
# godel-guard binary, to compare two builds against the same bare endpoint), BEFORE (a
# second build, measured in every run right after GUARD with the same config, on a row
# of its own marked "before": two builds compared round by round).
# With RATE (say 5000), each configuration is instead offered that many requests per
# second (16 connections, each pausing 16/RATE s between requests: bench/load/paced.lua)
# and the figure is CPU per decision: microseconds of the guard's CPU (user + system, from
# /proc) per request answered, beside the baseline's (the bare endpoint, or the upstream
# for the proxy) at the same rate, and redis-server's for the Redis configurations; the
# rate reached is printed too.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-2}"
DURATION="${DURATION:-10s}"
CONFIGS="${CONFIGS:-memory redis proxy}"
INSPECT="${INSPECT:-inspect.lua}"
export GODEL_BENCH_DIR="$PWD/bench/load"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
if ((${#need[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release --quiet -p godel-guard --bin godel-guard --example bare --example upstream
target="${CARGO_TARGET_DIR:-target}/release"
guard="${GUARD:-$target/godel-guard}"

source scripts/bench-lib.sh

# Prints "req/s p50_ms p99_ms" for one wrk run.
measure() { # measure <url> <script>
  wrk -t2 -c16 -d3s -s "$2" "$1" >/dev/null  # warm up: caches, buckets, connections
  wrk -t2 -c16 -d"$DURATION" --latency -s "$2" "$1" | wrk_figures | cut -d' ' -f1-3
}

guard_config() { # guard_config <memory|redis|proxy>[-tokens|-traced] <redis port> <upstream port> <otlp port>
  local tokens=""
  [[ "$1" == *-tokens ]] && tokens=", tokensPerMinute: 1000000000000, tokensPerDay: 1000000000000"
  cat <<YAML
tiers: [{name: free, ratePerSecond: 1000000, burst: 1000000$tokens}]
securityDebt: {quarantineThreshold: 1000000000000}
YAML
  [[ "$1" == *-traced ]] && printf 'telemetry: {otlpEndpoint: "http://127.0.0.1:%s", samplingRatio: 1}\n' "$4"
  local lease=""
  [[ "$1" == *-unleased ]] && lease=", leaseMs: 0"
  case "$(kind "$1")" in
    redis) printf 'rateLimit: {backend: redis, redis: {url: "redis://127.0.0.1:%s"%s}}\n' "$2" "$lease" ;;
    proxy) printf 'proxy: {upstream: "http://127.0.0.1:%s"}\n' "$3" ;;
  esac
}

kind() { local k="${1%-tokens}"; k="${k%-traced}"; echo "${k%-unleased}"; }

# Jaeger with in-memory storage on loopback ports, for the -traced configurations.
start_jaeger() { # start_jaeger <otlp port>
  local query grpc
  query="$(free_port)"; grpc="$(free_port)"
  cat >"$work/jaeger.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines: {traces: {receivers: [otlp], exporters: [jaeger_storage_exporter]}}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
extensions:
  jaeger_storage: {backends: {memory_store: {memory: {max_traces: 100000}}}}
  jaeger_query: {storage: {traces: memory_store}, http: {endpoint: "127.0.0.1:$query"}, grpc: {endpoint: "127.0.0.1:$grpc"}}
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:$1"}}}}
exporters: {jaeger_storage_exporter: {trace_storage: memory_store}}
YAML
  start "$1" "${JAEGER:-jaeger}" --config "$work/jaeger.yaml"
}

# Prints "req/s cpu_us_per_request other_cpu_us_per_request" for one paced wrk run
# against the server <pid>; the third figure is <other pid>'s (Redis), or "-".
measure_cpu() { # measure_cpu <url> <script> <pid> [<other pid>]
  local before after requests other_before=0 other_after=0
  GODEL_PACED_SCRIPT="$(basename "$2")" GODEL_PACE_MS="$(awk -v r="$RATE" 'BEGIN { printf "%.3f", 16000 / r }')" \
    wrk -t2 -c16 -d3s -s "$GODEL_BENCH_DIR/paced.lua" "$1" >/dev/null
  before="$(cpu_seconds "$3")"
  [ -n "${4:-}" ] && other_before="$(cpu_seconds "$4")"
  requests="$(GODEL_PACED_SCRIPT="$(basename "$2")" GODEL_PACE_MS="$(awk -v r="$RATE" 'BEGIN { printf "%.3f", 16000 / r }')" \
    wrk -t2 -c16 -d"$DURATION" -s "$GODEL_BENCH_DIR/paced.lua" "$1" | awk '/requests in/ { print $1 }')"
  after="$(cpu_seconds "$3")"
  [ -n "${4:-}" ] && other_after="$(cpu_seconds "$4")"
  awk -v n="$requests" -v b="$before" -v a="$after" -v d="${DURATION%s}" -v ob="$other_before" -v oa="$other_after" \
    -v other="${4:-}" 'BEGIN { printf "%.0f %.1f %s\n", n / d, (a - b) * 1e6 / n, other == "" ? "-" : sprintf("%.1f", (oa - ob) * 1e6 / n) }'
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
if [ -n "${RATE:-}" ]; then
  echo "offered: $RATE req/s; CPU in microseconds per request"
  printf '%-7s %-4s %10s %10s %13s %12s %13s\n' config run guard_rps base_rps guard_cpu_us base_cpu_us redis_cpu_us
else
  printf '%-7s %-4s %10s %10s %7s %9s %9s %9s %9s\n' config run guard_rps base_rps ratio guard_p50 guard_p99 base_p50 base_p99
fi
for config in $CONFIGS; do
  for run in $(seq "$RUNS"); do
    redis_port="$(free_port)"; upstream_port="$(free_port)"; guard_port="$(free_port)"; bare_port="$(free_port)"
    otlp_port="$(free_port)"
    redis_pid=""
    if [ "$(kind "$config")" = redis ]; then
      start "$redis_port" redis-server --port "$redis_port" --save "" --appendonly no
      redis_pid="${pids[-1]}"
    fi
    if [[ "$config" == *-traced ]]; then
      start_jaeger "$otlp_port"
    fi
    if [ "$(kind "$config")" = proxy ]; then
      start "$upstream_port" "$target/examples/upstream" "127.0.0.1:$upstream_port"
      script="$GODEL_BENCH_DIR/chat.lua"; base_url="http://127.0.0.1:$upstream_port"
    else
      start "$bare_port" "$target/examples/bare" "127.0.0.1:$bare_port"
      script="$GODEL_BENCH_DIR/$INSPECT"; base_url="http://127.0.0.1:$bare_port"
    fi
    base_pid="${pids[-1]}"
    guard_config "$config" "$redis_port" "$upstream_port" "$otlp_port" >"$work/config.yaml"
    # Logs as the operator deploys the guard: RUST_LOG=info, JSON lines.
    RUST_LOG=info start "$guard_port" "$guard" serve --listen "127.0.0.1:$guard_port" \
      --config "$work/config.yaml" --log-format json
    guard_pid="${pids[-1]}"
    if [ -n "${BEFORE:-}" ]; then
      before_port="$(free_port)"
      RUST_LOG=info start "$before_port" "$BEFORE" serve --listen "127.0.0.1:$before_port" \
        --config "$work/config.yaml" --log-format json
      before_pid="${pids[-1]}"
    fi
    if [ -n "${RATE:-}" ]; then
      read -r base_rps base_cpu _ < <(measure_cpu "$base_url" "$script" "$base_pid")
      read -r guard_rps guard_cpu redis_cpu < <(measure_cpu "http://127.0.0.1:$guard_port" "$script" "$guard_pid" "$redis_pid")
      printf '%-7s %-4s %10s %10s %13s %12s %13s\n' "$config" "$run" "$guard_rps" "$base_rps" "$guard_cpu" "$base_cpu" "$redis_cpu"
      if [ -n "${BEFORE:-}" ]; then
        read -r guard_rps guard_cpu redis_cpu < <(measure_cpu "http://127.0.0.1:$before_port" "$script" "$before_pid" "$redis_pid")
        printf '%-7s %-4s %10s %10s %13s %12s %13s\n' "$config" "$run" "$guard_rps" "$base_rps" "$guard_cpu" "$base_cpu" "$redis_cpu before"
      fi
      stop_all
      continue
    fi
    read -r base_rps base_p50 base_p99 < <(measure "$base_url" "$script")
    read -r guard_rps guard_p50 guard_p99 < <(measure "http://127.0.0.1:$guard_port" "$script")
    ratio="$(awk -v g="$guard_rps" -v b="$base_rps" 'BEGIN { printf "%.2f", g / b }')"
    printf '%-7s %-4s %10s %10s %7s %9s %9s %9s %9s\n' "$config" "$run" "$guard_rps" "$base_rps" "$ratio" \
      "$guard_p50" "$guard_p99" "$base_p50" "$base_p99"
    if [ -n "${BEFORE:-}" ]; then
      read -r guard_rps guard_p50 guard_p99 < <(measure "http://127.0.0.1:$before_port" "$script")
      ratio="$(awk -v g="$guard_rps" -v b="$base_rps" 'BEGIN { printf "%.2f", g / b }')"
      printf '%-7s %-4s %10s %10s %7s %9s %9s %9s %9s before\n' "$config" "$run" "$guard_rps" "$base_rps" "$ratio" \
        "$guard_p50" "$guard_p99" "$base_p50" "$base_p99"
    fi
    stop_all
  done
done
