//! The upstream API: what goes to it (the caller's credentials, content negotiation and
//! W3C trace context, never the guard's own user and tier headers), and what comes back (the headers
//! clients rely on: `Retry-After`, request ids, `openai-*`, `x-ratelimit-*`; never
//! hop-by-hop headers or the upstream's internals in an error body).
//!
//! Each call runs in an `upstream` client span (OpenTelemetry's HTTP client and GenAI
//! attributes). When traces are exported, the upstream's `traceparent` names that span,
//! so the upstream's own spans hang under the guard's; otherwise the caller's trace
//! context passes as it came.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use godel_config::ProxyConfig;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::dialect::Dialect;
use super::error::ProxyError;
use crate::metrics::{Metrics, UpstreamLabels};

/// An upstream API and the client that reaches it.
pub struct Upstream {
    client: reqwest::Client,
    config: ProxyConfig,
    /// `proxy.upstream`, parsed once: a call's URL is it with the call's path appended,
    /// so no request parses the host (IDNA included) again.
    base: reqwest::Url,
    /// The upstream's host, the `server.address` of its spans.
    host: String,
    /// Where the time to each answer head is counted.
    metrics: Arc<Metrics>,
}

/// One call to the upstream: where it goes and what it is, for its span.
pub(super) struct Call<'p> {
    pub method: Method,
    /// The path sent, which is not recorded: `/v1/models/{model}` has a request value in it.
    pub path: &'p str,
    /// `gen_ai.operation.name`; none for pass-through calls (models, token counts).
    pub operation: Option<&'static str>,
    pub dialect: Dialect,
}

/// Request headers passed upstream: the caller's credentials (OpenAI's bearer token,
/// Anthropic's `x-api-key`) and content negotiation.
const FORWARDED: [HeaderName; 3] = [header::AUTHORIZATION, HeaderName::from_static("x-api-key"), header::ACCEPT];
/// W3C trace context: the application's trace goes on at the upstream, through the guard.
const TRACE_CONTEXT: [HeaderName; 2] = [HeaderName::from_static("traceparent"), HeaderName::from_static("tracestate")];
/// W3C baggage, passed only when the policy says (`proxy.forwardBaggage`).
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
const FORWARDED_PREFIXES: [&str; 2] = ["openai-", "anthropic-"];

/// Answer headers passed back to the client.
const RELAYED: [&str; 6] =
    ["content-type", "cache-control", "retry-after", "retry-after-ms", "x-request-id", "request-id"];
const RELAYED_PREFIXES: [&str; 3] = ["openai-", "x-ratelimit-", "anthropic-"];

/// Most of an upstream error body the guard reads to see whether it is an OpenAI error
/// object; a bigger one is not.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Why the proxy cannot start. The messages never repeat the URL: it may carry
/// credentials.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("proxy.upstream is not a URL: {0}")]
    Url(#[source] url::ParseError),
    #[error("proxy.upstream must be an http or https URL with a host")]
    NotHttp,
    #[error("cannot build the upstream client: {0}")]
    Client(#[source] reqwest::Error),
}

impl Upstream {
    /// Refuses an upstream that is not an http(s) URL with a host, which every call
    /// would otherwise fail on.
    pub fn new(config: ProxyConfig, metrics: Arc<Metrics>) -> Result<Self, UpstreamError> {
        let base = reqwest::Url::parse(&config.upstream).map_err(UpstreamError::Url)?;
        let host = match base.host_str() {
            Some(host) if matches!(base.scheme(), "http" | "https") => host.to_owned(),
            _ => return Err(UpstreamError::NotHttp),
        };
        // A redirect is relayed as the upstream's answer, never followed: following it
        // would send the prompt to a destination the policy does not name.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(UpstreamError::Client)?;
        Ok(Self { client, config, base, host, metrics })
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The upstream URL with `path` after its own (`https://host/prefix` and
    /// `/v1/chat/completions` make `https://host/prefix/v1/chat/completions`); a query
    /// in `proxy.upstream` goes on every call.
    fn url_for(&self, path: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{}", self.base.path().trim_end_matches('/'), path));
        url
    }

    /// Sends a request to the call's path on the upstream, in the call's span. A timeout
    /// before the answer's head is a 504, any other failure a 502; the cause is logged,
    /// not shown.
    pub(super) async fn send(
        &self,
        call: Call<'_>,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, ProxyError> {
        let span = tracing::debug_span!(
            "upstream",
            otel.name = call.operation.unwrap_or(call.method.as_str()),
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = call.method.as_str(),
            http.response.status_code = Empty,
            server.address = self.host.as_str(),
            error.r#type = Empty,
            gen_ai.operation.name = call.operation,
            gen_ai.provider.name = call.dialect.provider(),
        );
        self.send_in(call, headers, body, &span).instrument(span.clone()).await
    }

    async fn send_in(
        &self,
        call: Call<'_>,
        headers: &HeaderMap,
        body: Option<Bytes>,
        span: &Span,
    ) -> Result<reqwest::Response, ProxyError> {
        let mut request = self.client.request(call.method, self.url_for(call.path));
        let own_context =
            (!span.is_disabled()).then(|| span.context()).filter(|cx| cx.span().span_context().is_valid());
        for (name, value) in headers {
            let forwarded = FORWARDED.contains(name)
                || (own_context.is_none() && TRACE_CONTEXT.contains(name))
                || (self.config.forward_baggage && *name == BAGGAGE)
                || FORWARDED_PREFIXES.iter().any(|p| name.as_str().starts_with(p));
            if forwarded {
                request = request.header(name, value);
            }
        }
        if let Some(context) = own_context {
            let mut trace_headers = HeaderMap::new();
            TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut trace_headers));
            request = request.headers(trace_headers);
        }
        if let Some(body) = body {
            request = request.header(header::CONTENT_TYPE, "application/json").body(body);
        }
        let started = Instant::now();
        let answer = request.send().await.map_err(|e| {
            if e.is_timeout() {
                tracing::warn!(error = %e.without_url(), "upstream timed out");
                ProxyError::UpstreamTimeout
            } else {
                tracing::warn!(error = %e.without_url(), "upstream unreachable");
                ProxyError::UpstreamUnreachable
            }
        });
        let outcome = match &answer {
            Ok(answer) => status_class(answer.status()),
            Err(ProxyError::UpstreamTimeout) => "timeout",
            Err(_) => "unreachable",
        };
        self.metrics.upstream.get_or_create(&UpstreamLabels { outcome }).observe(started.elapsed().as_secs_f64());
        match &answer {
            Ok(answer) => {
                span.record("http.response.status_code", i64::from(answer.status().as_u16()));
                if answer.status().is_server_error() {
                    span.record("error.type", outcome).record("otel.status_code", "ERROR");
                }
            }
            Err(_) => {
                span.record("error.type", outcome).record("otel.status_code", "ERROR");
            }
        }
        answer
    }
}

/// A status's class, the bounded label an upstream answer is counted under.
fn status_class(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The answer's status and the headers clients rely on.
pub(super) fn head(answer: &reqwest::Response) -> axum::http::response::Builder {
    let mut builder = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        let name = name.as_str();
        let relayed = RELAYED.contains(&name) || RELAYED_PREFIXES.iter().any(|p| name.starts_with(p));
        if let (true, Ok(value)) = (relayed, HeaderValue::from_bytes(value.as_bytes())) {
            builder = builder.header(name, value);
        }
    }
    builder
}

/// A successful answer streamed back as it arrives, unread.
pub(super) fn relay_unchanged(answer: reqwest::Response) -> Response {
    let builder = head(&answer);
    builder
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| ProxyError::UpstreamBroken.into_response())
}

/// An upstream error, status kept: its body passes when it is already an error object
/// of the route's `dialect` (the client's SDK reads it), and is replaced otherwise, so
/// tracebacks and HTML from the upstream's internals do not reach the client.
pub(super) async fn error_answer(answer: reqwest::Response, dialect: Dialect) -> Response {
    let status = answer.status();
    let builder = head(&answer);
    let mut body = Vec::new();
    let mut chunks = answer.bytes_stream();
    let mut complete = true;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() <= ERROR_BODY_LIMIT => body.extend_from_slice(&chunk),
            _ => {
                complete = false;
                break;
            }
        }
    }
    let is_api_error =
        complete && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| dialect.is_error(&v));
    tracing::info!(status = status.as_u16(), relayed = is_api_error, "upstream answered with an error");
    if is_api_error {
        return builder.body(Body::from(body)).unwrap_or_else(|_| ProxyError::UpstreamBroken.into_response());
    }
    let code = format!("upstream_{}", status.as_u16());
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let message = format!("the upstream API answered {status}");
    let replaced = dialect.error_body(status, kind, &code, &message);
    let mut response =
        builder.body(Body::from(replaced.to_string())).unwrap_or_else(|_| ProxyError::UpstreamBroken.into_response());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Result<Upstream, UpstreamError> {
        let config: ProxyConfig = serde_json::from_value(serde_json::json!({"upstream": url})).expect("a proxy config");
        Upstream::new(config, Arc::new(Metrics::default()))
    }

    #[test]
    fn an_upstream_that_is_not_an_http_url_is_refused_at_start() {
        assert!(matches!(upstream("not a url"), Err(UpstreamError::Url(_))));
        assert!(matches!(upstream("ftp://files.example"), Err(UpstreamError::NotHttp)));
        assert!(matches!(upstream("unix:/run/api.sock"), Err(UpstreamError::NotHttp)));
        let secret = upstream("http://user:hunter2@[::1").err().expect("no closing bracket");
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
        assert_eq!(upstream("https://api.openai.com").map(|u| u.host).ok().as_deref(), Some("api.openai.com"));
    }

    #[test]
    fn a_calls_path_goes_after_the_upstreams_own() {
        let path = "/v1/chat/completions";
        for (base, expect) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/chat/completions"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/chat/completions"),
            ("https://gateway.example/openai/", "https://gateway.example/openai/v1/chat/completions"),
            ("https://gateway.example/openai?tenant=a", "https://gateway.example/openai/v1/chat/completions?tenant=a"),
        ] {
            assert_eq!(upstream(base).expect(base).url_for(path).as_str(), expect, "{base}");
        }
        // Why `proxy::is_model_name` refuses a name of dots: the URL takes it as a step up.
        let dots = upstream("http://127.0.0.1:8080").expect("a URL").url_for("/v1/models/..");
        assert_eq!(dots.path(), "/v1/");
    }
}
