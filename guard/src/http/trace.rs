//! The server span of each request, added to the router only when traces are exported
//! ([`godel_telemetry::exporting`]): with traces off a request pays nothing for it.
//!
//! The span continues the caller's W3C trace (`traceparent`, `tracestate`) and carries
//! the OpenTelemetry HTTP server attributes: method, route template (never the path,
//! which may hold a model name) and status, and the GenAI token usage of a whole answer
//! that was read for it.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::ROUTES;

pub(super) async fn server_span(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let route = ROUTES.into_iter().find(|route| Some(*route) == matched).unwrap_or("other");
    let method = request.method().as_str().to_owned();
    let span = tracing::debug_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
    );
    let caller = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    if let Err(e) = span.set_parent(caller) {
        tracing::debug!(error = %e, "the caller's trace context was not attached");
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
