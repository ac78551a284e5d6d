// Pins prometheus-operator, whose module carries its CRDs: the end-to-end tests install
// the PrometheusRule and ServiceMonitor CRDs from it, so the operator's objects meet
// their real schemas.
module godel.dev/control-plane/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
