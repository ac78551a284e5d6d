//! The upstream API: what goes to it (the caller's credentials and content negotiation,
//! never the guard's own user and tier headers), and what comes back (the headers
//! clients rely on: `Retry-After`, request ids, `openai-*`, `x-ratelimit-*`; never
//! hop-by-hop headers or the upstream's internals in an error body).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use godel_config::ProxyConfig;
use serde_json::json;

use super::error::{ProxyError, openai_error};

/// An upstream API and the client that reaches it.
pub struct Upstream {
    client: reqwest::Client,
    config: ProxyConfig,
}

/// Request headers passed upstream.
const FORWARDED: [HeaderName; 2] = [header::AUTHORIZATION, header::ACCEPT];
const FORWARDED_PREFIXES: [&str; 2] = ["openai-", "anthropic-"];

/// Answer headers passed back to the client.
const RELAYED: [&str; 6] =
    ["content-type", "cache-control", "retry-after", "retry-after-ms", "x-request-id", "request-id"];
const RELAYED_PREFIXES: [&str; 3] = ["openai-", "x-ratelimit-", "anthropic-"];

/// Most of an upstream error body the guard reads to see whether it is an OpenAI error
/// object; a bigger one is not.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

impl Upstream {
    pub fn new(config: ProxyConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { client, config })
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Sends a request to `path` on the upstream. A timeout before the answer's head is
    /// a 504, any other failure a 502; the cause is logged, not shown.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, ProxyError> {
        let url = format!("{}{path}", self.config.upstream.trim_end_matches('/'));
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            if FORWARDED.contains(name) || FORWARDED_PREFIXES.iter().any(|p| name.as_str().starts_with(p)) {
                request = request.header(name, value);
            }
        }
        if let Some(body) = body {
            request = request.header(header::CONTENT_TYPE, "application/json").body(body);
        }
        request.send().await.map_err(|e| {
            if e.is_timeout() {
                tracing::warn!(error = %e.without_url(), "upstream timed out");
                ProxyError::UpstreamTimeout
            } else {
                tracing::warn!(error = %e.without_url(), "upstream unreachable");
                ProxyError::UpstreamUnreachable
            }
        })
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

/// An upstream error, status kept: its body passes when it is already an OpenAI error
/// object (the client's SDK reads it), and is replaced otherwise, so tracebacks and
/// HTML from the upstream's internals do not reach the client.
pub(super) async fn error_answer(answer: reqwest::Response) -> Response {
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
    let is_openai_error = complete
        && serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v["error"].is_object() && v["error"]["message"].is_string());
    tracing::info!(status = status.as_u16(), relayed = is_openai_error, "upstream answered with an error");
    if is_openai_error {
        return builder.body(Body::from(body)).unwrap_or_else(|_| ProxyError::UpstreamBroken.into_response());
    }
    let code = format!("upstream_{}", status.as_u16());
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let message = format!("the upstream API answered {status}");
    let replaced = json!({"error": openai_error(&message, kind, &code)});
    let mut response =
        builder.body(Body::from(replaced.to_string())).unwrap_or_else(|_| ProxyError::UpstreamBroken.into_response());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
