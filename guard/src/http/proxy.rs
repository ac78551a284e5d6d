//! The OpenAI-compatible proxy: `POST /v1/chat/completions` runs the same decision as
//! `/v1/inspect` over every message's text, answers 403 (block) or 429 (throttle)
//! itself, and forwards allowed requests upstream with `redact` spans masked, streaming
//! the answer back as it arrives (server-sent events included).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use godel_crds::{Action, ProxyConfig};
use serde_json::{Value, json};

use super::AppState;
use crate::engine::{Decision, Subject, Throttle, mask};
use godel_traps::Finding;

/// An upstream API and the client that reaches it.
pub struct Upstream {
    client: reqwest::Client,
    config: ProxyConfig,
}

impl Upstream {
    pub fn new(config: ProxyConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { client, config })
    }
}

/// Request headers passed upstream: the caller's credentials and content negotiation,
/// never the guard's own user and tier headers.
const FORWARDED: [HeaderName; 3] = [header::AUTHORIZATION, header::ACCEPT, header::CONTENT_TYPE];
const FORWARDED_PREFIXES: [&str; 2] = ["openai-", "anthropic-"];

/// Every answer the proxy gives instead of the upstream's, in OpenAI's error shape
/// (`{"error": {"message", "type", "code"}}`), so OpenAI clients show it as they would
/// the API's own.
#[derive(Debug)]
pub enum ProxyError {
    NotConfigured,
    NotJson,
    BadRequest(String),
    Throttled { retry_after_seconds: u64, why: Throttle },
    Blocked { findings: Vec<Finding> },
    Upstream(&'static str),
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match &self {
            ProxyError::NotConfigured => {
                (StatusCode::NOT_FOUND, "not_found", "the proxy is not configured (set proxy.upstream)".to_owned())
            }
            ProxyError::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "expected `Content-Type: application/json`".to_owned(),
            ),
            ProxyError::BadRequest(message) => (StatusCode::BAD_REQUEST, "invalid_request_error", message.clone()),
            ProxyError::Throttled { why: Throttle::Quarantined, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "guardrail_quarantined",
                "this user is quarantined by the guardrail policy after repeated violations".to_owned(),
            ),
            ProxyError::Throttled { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "rate limit exceeded for this user".to_owned())
            }
            ProxyError::Blocked { findings } => {
                let rules: Vec<&str> =
                    findings.iter().filter(|f| f.action == Action::Block).map(|f| &*f.rule).collect();
                (
                    StatusCode::FORBIDDEN,
                    "guardrail_blocked",
                    format!("blocked by the guardrail policy: {}", rules.join(", ")),
                )
            }
            ProxyError::Upstream(message) => (StatusCode::BAD_GATEWAY, "upstream_error", (*message).to_owned()),
        };
        let mut error = json!({"message": message, "type": kind, "code": status.as_u16()});
        if let ProxyError::Blocked { findings } = &self {
            error["findings"] = json!(findings);
        }
        let mut response = (status, axum::Json(json!({"error": error}))).into_response();
        if let ProxyError::Throttled { retry_after_seconds, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        }
        response
    }
}

/// Where each message's text sits in the combined prompt the traps read.
struct Segment {
    pointer: String,
    start: usize,
    end: usize,
}

/// The texts of all messages (string contents and `text` parts), joined by newlines.
fn collect_text(body: &Value) -> Result<(String, Vec<Segment>), &'static str> {
    let messages = body.get("messages").and_then(Value::as_array).ok_or("field `messages` must be an array")?;
    let mut prompt = String::new();
    let mut segments = Vec::new();
    let mut push = |pointer: String, text: &str| {
        if !prompt.is_empty() {
            prompt.push('\n');
        }
        let start = prompt.len();
        prompt.push_str(text);
        segments.push(Segment { pointer, start, end: prompt.len() });
    };
    for (i, message) in messages.iter().enumerate() {
        match message.get("content") {
            Some(Value::String(text)) => push(format!("/messages/{i}/content"), text),
            Some(Value::Array(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    if let Some(text) = part.get("text").and_then(Value::as_str) {
                        push(format!("/messages/{i}/content/{j}/text"), text);
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err("field `messages[].content` must be a string or an array of parts"),
        }
    }
    Ok((prompt, segments))
}

/// Masks every `redact` finding inside the message it falls in.
fn redact(body: &mut Value, prompt: &str, segments: &[Segment], findings: &[Finding]) {
    for segment in segments {
        let spans: Vec<(usize, usize, &str)> = findings
            .iter()
            .filter(|f| f.action == Action::Redact && f.start < segment.end && f.end > segment.start)
            .map(|f| (f.start.max(segment.start) - segment.start, f.end.min(segment.end) - segment.start, &*f.rule))
            .collect();
        if spans.is_empty() {
            continue;
        }
        let out = mask(&prompt[segment.start..segment.end], spans);
        if let Some(slot) = body.pointer_mut(&segment.pointer) {
            *slot = Value::String(out);
        }
    }
}

pub async fn chat_completions(State(state): State<Arc<AppState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let mut request_id = None;
    let mut response = answer(&state, &headers, &bytes, &mut request_id).await.unwrap_or_else(|e| e.into_response());
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert("x-godel-request-id", id);
    }
    response
}

/// The decision on a chat request and, if allowed, the upstream's answer; `request_id`
/// is set once the guard has decided, so every answer after that carries it.
async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    bytes: &Bytes,
    request_id: &mut Option<String>,
) -> Result<Response, ProxyError> {
    let upstream = state.upstream.as_ref().ok_or(ProxyError::NotConfigured)?;
    if !headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return Err(ProxyError::NotJson);
    }
    let mut body: Value = match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(_) => return Err(ProxyError::BadRequest("the body must be a JSON object".into())),
        Err(e) => {
            let at = format!("body is not valid JSON at line {} column {}", e.line(), e.column());
            return Err(ProxyError::BadRequest(at));
        }
    };
    let (prompt, segments) = collect_text(&body).map_err(|message| ProxyError::BadRequest(message.into()))?;
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let user_header = header_text(&upstream.config.user_header);
    let user_id = user_header.as_deref().or_else(|| body.get("user").and_then(Value::as_str)).ok_or_else(|| {
        ProxyError::BadRequest(format!(
            "the end user is unknown: send the `{}` header or the `user` field",
            upstream.config.user_header
        ))
    })?;
    let tier = header_text(&upstream.config.tier_header);
    let outcome = state
        .guard
        .inspect(Subject { user_id, tier: tier.as_deref(), prompt: &prompt })
        .await
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    *request_id = Some(outcome.request_id.clone());
    match outcome.decision {
        Decision::Throttle(why) => {
            Err(ProxyError::Throttled { retry_after_seconds: outcome.retry_after_ms.div_ceil(1000).max(1), why })
        }
        Decision::Block => Err(ProxyError::Blocked { findings: outcome.findings }),
        Decision::Allow => {
            redact(&mut body, &prompt, &segments, &outcome.findings);
            forward(upstream, headers, &body).await
        }
    }
}

async fn forward(upstream: &Upstream, headers: &HeaderMap, body: &Value) -> Result<Response, ProxyError> {
    let url = format!("{}/v1/chat/completions", upstream.config.upstream.trim_end_matches('/'));
    let mut request = upstream.client.post(url).json(body);
    for (name, value) in headers {
        let keep = FORWARDED.contains(name) || FORWARDED_PREFIXES.iter().any(|p| name.as_str().starts_with(p));
        if keep && *name != header::CONTENT_TYPE {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "upstream unreachable");
            return Err(ProxyError::Upstream("the upstream API did not answer"));
        }
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(value) =
            answer.headers().get(name.as_str()).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .map_err(|_| ProxyError::Upstream("the upstream answer could not be relayed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use godel_crds::Severity;

    #[test]
    fn text_is_collected_from_strings_and_parts_and_redacted_in_place() {
        let mut body = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "mail jane@example.com"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        ]});
        let (prompt, segments) = collect_text(&body).unwrap();
        assert_eq!(prompt, "be brief\nmail jane@example.com");
        let start = prompt.find("jane").unwrap();
        let finding = Finding {
            trap: "regex",
            rule: "email-address".into(),
            severity: Severity::Medium,
            action: Action::Redact,
            start,
            end: start + "jane@example.com".len(),
        };
        redact(&mut body, &prompt, &segments, &[finding]);
        assert_eq!(body["messages"][1]["content"][0]["text"], "mail [REDACTED:email-address]");
        assert_eq!(body["messages"][0]["content"], "be brief");
    }

    #[test]
    fn messages_must_be_an_array_of_text() {
        assert!(collect_text(&json!({"model": "x"})).is_err());
        assert!(collect_text(&json!({"messages": [{"content": 5}]})).is_err());
    }
}
