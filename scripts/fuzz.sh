#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) with cargo-fuzz on nightly, each from its
# seeds (fuzz/seeds/<target>) for FUZZ_SECONDS (default 5: the smoke run of the test
# command; an hour or more for a real run). New corpus entries go to a temporary
# directory, never into the clone. A crash fails the run; its input is kept in
# $TMPDIR/godel-fuzz-artifacts and libFuzzer prints how to reproduce it. Options:
# FUZZ_SECONDS, FUZZ_TARGETS (default: all), GODEL_FUZZ_TARGET (the cargo target
# directory, default $TMPDIR/godel-fuzz-target, kept between runs like the main one),
# FUZZ_SANITIZER (default none: the code under test is safe Rust, whose bugs are panics
# and broken assertions, which libFuzzer catches alone; `address` builds slower and runs
# at half the speed, for the unsafe code of dependencies).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-5}"
sanitizer="${FUZZ_SANITIZER:-none}"
export CARGO_TARGET_DIR="${GODEL_FUZZ_TARGET:-${TMPDIR:-/tmp}/godel-fuzz-target}"
artifacts="${TMPDIR:-/tmp}/godel-fuzz-artifacts"
rustup run nightly rustc --version >/dev/null 2>&1 ||
  { echo "the fuzz targets need the nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null ||
  { echo "cargo-fuzz is missing: scripts/setup.sh installs it" >&2; exit 1; }

start=$(date +%s)
# cargo-fuzz takes no --locked: this fails when fuzz/Cargo.lock would have to change.
cargo +nightly metadata --locked --format-version 1 >/dev/null
cargo +nightly fuzz build --sanitizer "$sanitizer" >&2
echo "fuzz: targets built in $(($(date +%s) - start)) s" >&2
mkdir -p "$artifacts"
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
for target in ${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}; do
  mkdir -p "$corpus/$target"
  echo "fuzz: $target for ${seconds} s" >&2
  status=0
  cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -artifact_prefix="$artifacts/$target-" -print_final_stats=1 \
    >"$corpus/$target.log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|artifact_prefix|Test unit written)|panicked' \
    "$corpus/$target.log" >&2 || true
  if [ "$status" != 0 ]; then
    grep -A20 panicked "$corpus/$target.log" | head -30 >&2 || true
    echo "fuzz: $target failed; its input is under $artifacts" >&2
    exit 1
  fi
done
