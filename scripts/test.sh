#!/usr/bin/env bash
# The test suite by tier; `all` (the default) is what CI runs and the README's one command.
#   unit         format, lint, and every crate's own tests: needs only Rust
#   integration  the test targets against real peers (Redis, Prometheus, KMS, Vault API,
#                the OpenAI SDK, kubectl), all but the operator's end-to-end suite
#   e2e          the operator against a real Kubernetes control plane
#   fuzz         a few seconds of each fuzz target (scripts/fuzz.sh; FUZZ_SECONDS for more)
#   all          every tier, in one build, and the fuzz smoke run
# Each tier but `unit` first runs scripts/setup.sh, which installs the peers when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tier="${1:-all}"

lint() {
  cargo fmt --all -- --check
  cargo fmt --manifest-path fuzz/Cargo.toml -- --check
  cargo clippy --workspace --all-targets --locked -- -D warnings
  # The fuzz targets' entry points, compiled only for them.
  cargo clippy -p godel-guard --lib --features fuzzing --locked -- -D warnings
  cargo clippy -p godel-traps --lib --features fuzzing --locked -- -D warnings
}

peers() {
  ./scripts/setup.sh
  GODEL_CONTROL_PLANE_BIN="$(./scripts/control-plane.sh)"
  export GODEL_CONTROL_PLANE_BIN
  export PATH="${GODEL_TEST_VENV:-${TMPDIR:-/tmp}/godel-test-tools/venv}/bin:$GODEL_CONTROL_PLANE_BIN:$PATH"
  for tool in redis-server redis-cli promtool lua5.1 openssl unshare nsenter ip curl moto_server bao kubernetes-validate kubectl helm jaeger node; do
    command -v "$tool" >/dev/null || { echo "test peer $tool is still missing" >&2; exit 1; }
  done
}

case "$tier" in
  unit)
    lint
    cargo test --workspace --locked --lib --bins
    ;;
  integration)
    peers
    cargo test --workspace --locked --exclude godel-operator --test '*'
    cargo test -p godel-operator --locked --test reconcile --test leader
    ;;
  e2e)
    peers
    cargo test -p godel-operator --locked --test e2e
    ;;
  fuzz)
    ./scripts/setup.sh
    ./scripts/fuzz.sh
    ;;
  all)
    peers
    lint
    cargo test --workspace --locked
    ./scripts/fuzz.sh
    ;;
  *)
    echo "usage: $0 [unit|integration|e2e|fuzz|all]" >&2
    exit 2
    ;;
esac
