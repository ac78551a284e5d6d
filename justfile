# Everyday commands. `just` is optional: each recipe is one plain command.

# Run the guard with its embedded defaults on 127.0.0.1:8080.
run:
    cargo run --release -p godel-guard

build:
    cargo build --workspace --all-targets

# The whole suite, installing Redis when missing (what CI runs).
test:
    ./scripts/test.sh

# Build (or find in the cache) the e2e control plane; prints its bin directory.
control-plane:
    ./scripts/control-plane.sh

# The operator against a real control plane (builds it first when missing).
e2e:
    cargo test -p godel-operator --test e2e

# Trap engine throughput (criterion); results go to BENCHMARKS.md.
bench:
    cargo bench -p godel-traps --bench traps

# The HTTP path under load: the guard against a bare axum endpoint, three configurations
# (in-memory limiter, Redis limiter, proxy); results go to BENCHMARKS.md.
load-bench:
    ./scripts/load-bench.sh

# Our proxy beside agentgateway in front of the same local upstream (AGENTGATEWAY names
# its binary, built outside the clone as BENCHMARKS.md says); results go to BENCHMARKS.md.
compare:
    ./scripts/compare.sh

# The guard's memory after 200,000 distinct users, and once they are idle.
memory-bench:
    ./scripts/memory-bench.sh

# Every fuzz target for FUZZ_SECONDS each (default 5; an hour or more for a real run).
fuzz:
    ./scripts/fuzz.sh

# Detection quality: secrets and injection sets, held-out split apart, beside
# detect-secrets; results go to BENCHMARKS.md.
eval:
    ./scripts/eval.sh

# Rewrite the entropy trap's letter-pair table (traps/src/words/bigrams.rs); reproducible.
letter-bigrams:
    python3 eval/letter_bigrams.py

# Retrain the learned injection detector (traps/src/classifier/model.bin); reproducible.
train-injection:
    ./scripts/train-injection.sh

lint:
    cargo fmt --all -- --check
    cargo fmt --manifest-path fuzz/Cargo.toml -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p godel-guard --lib --features fuzzing -- -D warnings

# Regenerate the CRD and every generated file under config/.
crd:
    GODEL_REGENERATE=1 cargo test -p godel-tests --test generated

# Run the operator against the current kubeconfig.
operator:
    cargo run -p godel-operator -- run
