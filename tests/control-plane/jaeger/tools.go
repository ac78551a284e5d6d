//go:build tools

// Package tools pins Jaeger (v2, built on the OpenTelemetry Collector), the trace backend
// the tracing test exports the guard's spans to over OTLP and reads them back from.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
