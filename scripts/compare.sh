#!/usr/bin/env bash
# Side by side with agentgateway (`just compare`): its LLM proxy and ours in front of the
# same local OpenAI-compatible upstream (guard/examples/upstream.rs), driven by the same
# wrk load (2 threads, CONNECTIONS connections, bench/load/chat.lua: ordinary prompts over 5,000
# users), one after the other, ROUNDS times (default 2), each round also measuring the
# upstream called directly. Prints req/s, p50 and p99, the p99 each proxy adds over the
# upstream of the same round, the proxy's CPU per request (user + system over the
# measured run, from /proc) and its resident memory (peak and after the run). With RATE
# (say 1000), each side is offered that many requests a second instead of as many as it
# takes (bench/load/paced.lua), as the published figures of agentgateway are.
#
# Three proxies per round:
#   agentgateway  its prompt guard on both directions: the built-in PII recognisers
#                 (email, ssn, creditCard, phoneNumber, caSin) and the eight regexes
#                 below (secret and injection rules), action reject
#   godel-same    our proxy with that rule set only (PII pack plus the same regexes;
#                 no entropy, unicode, decoding or learned detector)
#   godel         our proxy with its default policy: every trap on
#
# agentgateway is not built here: AGENTGATEWAY names its binary, built from its own
# repository outside this clone (how: BENCHMARKS.md, "Side by side with agentgateway").
# Options: ROUNDS, DURATION (default 10s), CONNECTIONS (default 16; 1 measures what a
# proxy adds to one request with no queueing), RATE, PROXIES (default "agentgateway godel-same
# godel"), GUARD (another build's godel-guard binary).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-16}"
PROXIES="${PROXIES:-agentgateway godel-same godel}"
export GODEL_BENCH_DIR="$PWD/bench/load"

if [[ " $PROXIES " == *" agentgateway "* ]] && [ ! -x "${AGENTGATEWAY:-}" ]; then
  echo "AGENTGATEWAY must name an agentgateway binary (BENCHMARKS.md says how to build one)" >&2
  exit 2
fi
command -v wrk >/dev/null || {
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
}

cargo build --release --quiet -p godel-guard --bin godel-guard --example upstream
target="${CARGO_TARGET_DIR:-target}/release"
guard="${GUARD:-$target/godel-guard}"

source scripts/bench-lib.sh

# Prints "req/s p50_ms p99_ms non2xx cpu_us_per_request" for one wrk run after a warm-up;
# the CPU is <pid>'s over the measured run. With RATE, each connection paces itself.
measure() { # measure <url> <pid>
  local script="$GODEL_BENCH_DIR/chat.lua" before after rps p50 p99 non2xx requests threads=$((CONNECTIONS < 2 ? 1 : 2))
  if [ -n "${RATE:-}" ]; then
    script="$GODEL_BENCH_DIR/paced.lua"
    export GODEL_PACED_SCRIPT=chat.lua GODEL_PACE_MS="$(awk -v r="$RATE" -v c="$CONNECTIONS" 'BEGIN { printf "%.3f", c * 1000 / r }')"
  fi
  wrk -t"$threads" -c"$CONNECTIONS" -d3s -s "$script" "$1" >/dev/null
  before="$(cpu_seconds "$2")"
  wrk -t"$threads" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$1" >"$work/wrk.out"
  after="$(cpu_seconds "$2")"
  read -r rps p50 p99 non2xx requests < <(wrk_figures <"$work/wrk.out")
  echo "$rps $p50 $p99 $non2xx $(awk -v b="$before" -v a="$after" -v n="$requests" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }')"
}

# Resident memory of <pid> in MiB: "peak now".
rss() { awk '/^VmHWM/ { peak = $2 } /^VmRSS/ { now = $2 } END { printf "%.1f %.1f\n", peak / 1024, now / 1024 }' "/proc/$1/status"; }

# The regexes both guards apply beside the PII recognisers: our pack rules of these names,
# shortened (no capture groups, fewer phrasings), so both sides run exactly the same eight.
RULES=(
  'aws-access-key-id:\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b'
  'github-token:\bgh[pousr]_[A-Za-z0-9]{36,255}\b'
  'openai-api-key:\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}'
  'slack-token:\bxox[baprs]-[0-9]{10,13}-[0-9A-Za-z-]{10,}'
  'private-key:-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----'
  'json-web-token:\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}'
  'ignore-previous-instructions:(?i)\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:previous|prior|above)\s+instructions'
  'reveal-system-prompt:(?i)\b(?:reveal|show|print)\s+(?:me\s+)?(?:your|the)\s+system\s+prompt'
)

yaml_string() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

agentgateway_config() { # agentgateway_config <port> <upstream port>
  local rules="" rule
  for name in email ssn creditCard phoneNumber caSin; do rules+="                - builtin: $name"$'\n'; done
  for rule in "${RULES[@]}"; do rules+="                - pattern: $(yaml_string "${rule#*:}")"$'\n'; done
  cat <<YAML
binds:
- port: $1
  listeners:
  - routes:
    - backends:
      - ai:
          name: upstream
          hostOverride: "127.0.0.1:$2"
          provider:
            openAI: {model: gpt-4o-mini}
      policies:
        ai:
          promptGuard:
            request:
            - regex:
                action: reject
                rules:
$rules            response:
            - regex:
                action: reject
                rules:
$rules
YAML
}

godel_config() { # godel_config <godel|godel-same> <upstream port>
  cat <<YAML
tiers: [{name: free, ratePerSecond: 1000000, burst: 1000000}]
securityDebt: {quarantineThreshold: 1000000000000}
proxy: {upstream: "http://127.0.0.1:$2"}
YAML
  [ "$1" = godel ] && return
  echo "traps:"
  echo "  entropy: {enabled: false}"
  echo "  unicode: {enabled: false}"
  echo "  classifier: {enabled: false}"
  echo "  regex:"
  echo "    packs: [pii]"
  echo "    rules:"
  for rule in "${RULES[@]}"; do
    printf '    - {name: %s, pattern: %s, severity: high, action: block}\n' "same-${rule%%:*}" "$(yaml_string "${rule#*:}")"
  done
}

echo "machine: $(nproc) cores; $CONNECTIONS connections; $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); agentgateway: ${AGENTGATEWAY:-none}"
[ -n "${RATE:-}" ] && echo "offered: $RATE req/s ($CONNECTIONS connections, each pausing $CONNECTIONS/RATE s)"
printf '%-5s %-13s %9s %9s %9s %12s %10s %9s %9s %6s\n' round proxy req_s p50_ms p99_ms p99_added_ms cpu_us_req rss_peak rss_end non2xx
for round in $(seq "$ROUNDS"); do
  upstream_port="$(free_port)"
  start "$upstream_port" "$target/examples/upstream" "127.0.0.1:$upstream_port"
  read -r base_rps base_p50 base_p99 base_bad base_cpu < <(measure "http://127.0.0.1:$upstream_port" "${pids[-1]}")
  printf '%-5s %-13s %9s %9s %9s %12s %10s %9s %9s %6s\n' "$round" upstream "$base_rps" "$base_p50" "$base_p99" - "$base_cpu" - - "$base_bad"
  for proxy in $PROXIES; do
    port="$(free_port)"
    case "$proxy" in
      agentgateway)
        agentgateway_config "$port" "$upstream_port" >"$work/agentgateway.yaml"
        OPENAI_API_KEY=bench-key RUST_LOG=warn start "$port" "$AGENTGATEWAY" -f "$work/agentgateway.yaml" ;;
      godel | godel-same)
        godel_config "$proxy" "$upstream_port" >"$work/$proxy.yaml"
        RUST_LOG=warn start "$port" "$guard" serve --listen "127.0.0.1:$port" --config "$work/$proxy.yaml" --log-format json ;;
      *) echo "unknown proxy $proxy" >&2; exit 2 ;;
    esac
    pid="${pids[-1]}"
    read -r rps p50 p99 bad cpu < <(measure "http://127.0.0.1:$port" "$pid")
    read -r peak now < <(rss "$pid")
    added="$(awk -v p="$p99" -v b="$base_p99" 'BEGIN { printf "%.3f", p - b }')"
    printf '%-5s %-13s %9s %9s %9s %12s %10s %9s %9s %6s\n' "$round" "$proxy" "$rps" "$p50" "$p99" "$added" "$cpu" "$peak" "$now" "$bad"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    unset 'pids[-1]'
  done
  stop_all
done
