#!/usr/bin/env bash
# Builds the end-to-end tests' Kubernetes control plane from the Go modules pinned in
# tests/control-plane: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
# (kubernetes/), the oldest supported kube-apiserver (kubernetes-oldest/), etcd, kwok and
# kwokctl, prometheus-operator's CRDs, helm (helm/: the chart tests and the end-to-end
# chart install) and Jaeger (jaeger/: the trace backend of the guard's tracing test).
# Nothing is downloaded but modules from the Go module proxy.
#
# The binaries land in $GODEL_CP_CACHE/bin/<key>, where <key> hashes every go.mod and
# go.sum file and the Go version, so a later run (or a CI run on the same machine) reuses
# them; the Go build and module caches live beside them, outside the clone. Prints the bin
# directory on stdout, progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/../tests/control-plane"

cache="${GODEL_CP_CACHE:-${TMPDIR:-/tmp}/godel-control-plane}"
modules=(kubernetes kubernetes-oldest etcd kwok prometheus-operator helm jaeger)
key="$({ go version; for m in "${modules[@]}"; do cat "$m/go.mod" "$m/go.sum"; done; } | sha256sum | cut -c1-16)"
bin="$cache/bin/$key"
tools=(kube-apiserver kube-apiserver-oldest kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm jaeger)
crds=(monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_servicemonitors.yaml)

stages=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)

export GOCACHE="$cache/go-build" GOMODCACHE="$cache/go-mod" GOFLAGS="-modcacherw -mod=mod"

# kwok's default Stages, which the e2e harness extends (kwok applies none of its own
# once a config names any): read from the kwok module's source, no build needed.
kwok_stages() { # destination dir
  local src
  src="$(cd kwok && go mod download -json sigs.k8s.io/kwok | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  mkdir -p "$1/kwok-stages"
  for s in "${stages[@]}"; do cp "$src/kustomize/stage/$s" "$1/kwok-stages/"; done
}

complete=1
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || complete=0; done
for c in "${crds[@]}"; do [ -f "$bin/prometheus-operator-crds/$c" ] || complete=0; done
if [ "$complete" = 1 ]; then
  for s in "${stages[@]}"; do [ -f "$bin/kwok-stages/$(basename "$s")" ] || { kwok_stages "$bin"; break; }; done
  echo "$bin"
  exit 0
fi

export CGO_ENABLED=0
mkdir -p "$bin.partial"
start=$(date +%s)
# The components report the Kubernetes version of their module (kubectl version,
# /version, and kwokctl's choice of flags).
version_flags() { # module dir
  local version minor
  version="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$1/go.mod")"
  [ -n "$version" ] || return 0
  minor="$(echo "$version" | cut -d. -f2)"
  echo "-X k8s.io/component-base/version.gitVersion=$version \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/client-go/pkg/version.gitVersion=$version \
    -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

build() { # module dir, output name, package
  echo "control plane: building $2 ($3)" >&2
  (cd "$1" && go build -trimpath -ldflags "-s -w $(version_flags .)" -o "$bin.partial/$2" "$3")
}
build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubernetes-oldest kube-apiserver-oldest k8s.io/kubernetes/cmd/kube-apiserver
build helm helm helm.sh/helm/v4/cmd/helm
build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger

echo "control plane: prometheus-operator CRDs" >&2
src="$(cd prometheus-operator && go mod download -json github.com/prometheus-operator/prometheus-operator | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
mkdir -p "$bin.partial/prometheus-operator-crds"
for c in "${crds[@]}"; do cp "$src/example/prometheus-operator-crd/$c" "$bin.partial/prometheus-operator-crds/"; done

kwok_stages "$bin.partial"

rm -rf "$bin"
mv "$bin.partial" "$bin"
# Binaries of earlier pins are not used again.
find "$cache/bin" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +
echo "control plane: built in $(($(date +%s) - start)) s into $bin" >&2
echo "$bin"
