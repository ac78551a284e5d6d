//go:build tools

// Package tools pins helm, which the chart tests lint and render with and the
// end-to-end suite installs the chart with.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
