//! Every answer the proxy gives instead of the upstream's, in the error shape of the
//! route's [`Dialect`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use godel_config::Action;
use godel_traps::Finding;
use serde_json::json;

use super::dialect::Dialect;
use crate::http::finding::wire;
use crate::limiter::Throttle;

/// Every answer the proxy gives instead of the upstream's, in the error shape of the
/// route's dialect, so clients raise it as they would the API's own.
#[derive(Debug)]
pub(super) enum ProxyError {
    NotConfigured,
    NotJson,
    BadRequest(String),
    Throttled {
        retry_after_seconds: u64,
        why: Throttle,
    },
    Blocked {
        findings: Vec<Finding>,
    },
    /// The model's answer carried something the policy blocks.
    AnswerBlocked {
        findings: Vec<Finding>,
    },
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamBroken,
}

fn blocked_rules(findings: &[Finding], only_block: bool) -> String {
    let mut rules: Vec<&str> =
        findings.iter().filter(|f| !only_block || f.action == Action::Block).map(|f| &*f.rule).collect();
    rules.dedup();
    rules.join(", ")
}

impl ProxyError {
    /// Status, OpenAI error `type`, `code` and message: the response's, and a stream's
    /// error event's when the answer is withheld mid-stream.
    pub(super) fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            ProxyError::NotConfigured => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                "the proxy is not configured (set proxy.upstream)".to_owned(),
            ),
            ProxyError::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "unsupported_media_type",
                "expected `Content-Type: application/json`".to_owned(),
            ),
            ProxyError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", message.clone())
            }
            ProxyError::Throttled { why: Throttle::Quarantined, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "guardrail_quarantined",
                "guardrail_quarantined",
                "this user is quarantined by the guardrail policy after repeated violations".to_owned(),
            ),
            // OpenAI's own shapes: `tokens` for a token rate limit, `insufficient_quota` for
            // a spent budget.
            ProxyError::Throttled { why: Throttle::TokenLimited, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "tokens",
                "rate_limit_exceeded",
                "token rate limit reached for this user: retry after the Retry-After header's seconds".to_owned(),
            ),
            ProxyError::Throttled { why: Throttle::OverBudget, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
                "this user's daily budget is spent".to_owned(),
            ),
            ProxyError::Throttled { why: Throttle::TooManyStreams, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "too_many_streams",
                "too many streamed answers open for this user: wait for one to end".to_owned(),
            ),
            ProxyError::Throttled { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "rate_limit_exceeded",
                "rate limit exceeded for this user".to_owned(),
            ),
            ProxyError::Blocked { findings } => (
                StatusCode::FORBIDDEN,
                "guardrail_blocked",
                "guardrail_blocked",
                format!("blocked by the guardrail policy: {}", blocked_rules(findings, true)),
            ),
            ProxyError::AnswerBlocked { findings } => (
                StatusCode::FORBIDDEN,
                "guardrail_blocked",
                "guardrail_blocked_answer",
                format!("the model's answer was withheld by the guardrail policy: {}", blocked_rules(findings, false)),
            ),
            ProxyError::UpstreamUnreachable => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream_unreachable",
                "the upstream API could not be reached".to_owned(),
            ),
            ProxyError::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                "upstream_timeout",
                "the upstream API did not answer in time".to_owned(),
            ),
            ProxyError::UpstreamBroken => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream_error",
                "the upstream API's answer could not be relayed".to_owned(),
            ),
        }
    }
}

impl ProxyError {
    /// The error as an answer in `dialect`'s shape; a block lists its findings (rule
    /// names and spans, never the text), a throttle says when to retry.
    pub(super) fn respond(self, dialect: Dialect) -> Response {
        let (status, kind, code, message) = self.parts();
        let mut body = dialect.error_body(status, kind, code, &message);
        if let ProxyError::Blocked { findings } | ProxyError::AnswerBlocked { findings } = &self {
            body["error"]["findings"] = json!(wire(findings));
        }
        let mut response = (status, axum::Json(body)).into_response();
        let retry_after = match self {
            ProxyError::Throttled { retry_after_seconds, .. } => Some(retry_after_seconds),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        self.respond(Dialect::OpenAi)
    }
}
