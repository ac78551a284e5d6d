#!/usr/bin/env bash
# The guard's memory with many users (`just memory-bench`): its resident set size at
# start, after USERS distinct users (default 200,000) have each sent a request to the
# in-memory limiter, and once they have been idle longer than a bucket lives (a bucket
# is dropped when it is full again: one second with this policy's rate and burst, and
# the sweeper passes every ten seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${USERS:-200000}"

command -v wrk >/dev/null || {
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
}
cargo build --release --quiet -p godel-guard --bin godel-guard
target="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
trap 'kill "$guard" 2>/dev/null || true; rm -rf "$work"' EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
printf 'tiers: [{name: free, ratePerSecond: 10, burst: 10}]\n' >"$work/config.yaml"
RUST_LOG=warn "$target/godel-guard" serve --listen "127.0.0.1:$port" --config "$work/config.yaml" \
  --log-format json >"$work/audit.log" 2>"$work/guard.log" &
guard=$!
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$guard/status"; }
echo "at start:                         RSS $(rss)"
sent=0
run=0
while [ "$sent" -lt "$USERS" ]; do
  run=$((run + 1))
  n="$(GODEL_RUN=$run wrk -t2 -c16 -d5s -s bench/load/users.lua "http://127.0.0.1:$port" | awk '/requests in/ {print $1}')"
  sent=$((sent + n))
done
echo "after $sent distinct users:       RSS $(rss)"
sleep 12
echo "12 s later, all of them idle:     RSS $(rss)"
sleep 10
echo "22 s later:                       RSS $(rss)"
