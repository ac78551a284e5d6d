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
use crate::engine::{Decision, InspectRequest, mask};
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

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": kind, "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
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
    let Some(upstream) = &state.upstream else {
        return error(StatusCode::NOT_FOUND, "not_found", "the proxy is not configured (set proxy.upstream)");
    };
    if !headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "expected `Content-Type: application/json`",
        );
    }
    let mut body: Value = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(_) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", "the body must be a JSON object"),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("body is not valid JSON at line {} column {}", e.line(), e.column()),
            );
        }
    };
    let (prompt, segments) = match collect_text(&body) {
        Ok(collected) => collected,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", message),
    };
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(user_id) = header_text(&upstream.config.user_header)
        .or_else(|| body.get("user").and_then(Value::as_str).map(str::to_owned))
    else {
        let message =
            format!("the end user is unknown: send the `{}` header or the `user` field", upstream.config.user_header);
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", message);
    };
    let tier = header_text(&upstream.config.tier_header);
    let verdict = match state.guard.inspect(InspectRequest { user_id, tier, prompt: prompt.clone() }).await {
        Ok(verdict) => verdict,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e.to_string()),
    };
    let request_id = HeaderValue::from_str(&verdict.request_id).ok();
    let mut response = match verdict.decision {
        Decision::Throttle => {
            let seconds = verdict.rate_limit.retry_after_ms.div_ceil(1000).max(1);
            let mut r = if verdict.reason == Some("quarantined") {
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "guardrail_quarantined",
                    "this user is quarantined by the guardrail policy after repeated violations",
                )
            } else {
                error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "rate limit exceeded for this user")
            };
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            r
        }
        Decision::Block => {
            let rules: Vec<&str> =
                verdict.findings.iter().filter(|f| f.action == Action::Block).map(|f| &*f.rule).collect();
            let body = json!({"error": {
                "message": format!("blocked by the guardrail policy: {}", rules.join(", ")),
                "type": "guardrail_blocked",
                "code": 403,
                "findings": verdict.findings,
            }});
            (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
        }
        Decision::Allow => {
            redact(&mut body, &prompt, &segments, &verdict.findings);
            forward(upstream, &headers, &body).await
        }
    };
    if let Some(id) = request_id {
        response.headers_mut().insert("x-godel-request-id", id);
    }
    response
}

async fn forward(upstream: &Upstream, headers: &HeaderMap, body: &Value) -> Response {
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
            return error(StatusCode::BAD_GATEWAY, "upstream_error", "the upstream API did not answer");
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
    response.body(Body::from_stream(answer.bytes_stream())).unwrap_or_else(|_| {
        error(StatusCode::BAD_GATEWAY, "upstream_error", "the upstream answer could not be relayed")
    })
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
