//! The OpenAI-compatible proxy, guarding both directions. A request to one of the
//! inspected routes (chat completions, responses, completions, embeddings) runs the same decision as `/v1/inspect` over every text a model reads in
//! it ([`text`]); the guard answers 403 (block) or 429 (throttle) itself, and forwards
//! an allowed request byte for byte but for its `redact` spans ([`upstream`]). The
//! model's answer comes back through the answer traps, whole or as a stream
//! ([`answer`]). `GET /v1/models` passes through.

mod answer;
mod text;
mod upstream;

use std::ops::Range;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use godel_crds::Action;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::AppState;
use crate::engine::{Decision, Subject, Throttle, mask};
use godel_traps::Finding;
use text::Segment;

pub use upstream::Upstream;

/// A route the proxy inspects: its path, the field that must be present, and whether
/// its answer holds text (an embedding does not, and must not be rewritten).
pub struct Route {
    pub path: &'static str,
    required: &'static str,
    answer_is_text: bool,
}

pub const CHAT_COMPLETIONS: Route = Route { path: "/v1/chat/completions", required: "messages", answer_is_text: true };
pub const RESPONSES: Route = Route { path: "/v1/responses", required: "input", answer_is_text: true };
pub const COMPLETIONS: Route = Route { path: "/v1/completions", required: "prompt", answer_is_text: true };
pub const EMBEDDINGS: Route = Route { path: "/v1/embeddings", required: "input", answer_is_text: false };
pub const MODELS: &str = "/v1/models";
pub const MODEL: &str = "/v1/models/{model}";

/// Every answer the proxy gives instead of the upstream's, in OpenAI's error shape
/// (`{"error": {"message", "type", "code"}}` with a string `code`), so OpenAI clients
/// raise it as they would the API's own.
#[derive(Debug)]
pub enum ProxyError {
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

/// An error object as OpenAI's API writes one, which its SDKs raise.
fn openai_error(message: &str, kind: &str, code: &str) -> serde_json::Value {
    json!({"message": message, "type": kind, "param": null, "code": code})
}

impl ProxyError {
    /// Status, OpenAI error `type`, `code` and message: the response's, and a stream's
    /// error event's when the answer is withheld mid-stream.
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
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

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let (status, kind, code, message) = self.parts();
        let mut error = openai_error(&message, kind, code);
        if let ProxyError::Blocked { findings } | ProxyError::AnswerBlocked { findings } = &self {
            error["findings"] = json!(findings);
        }
        let mut response = (status, axum::Json(json!({"error": error}))).into_response();
        if let ProxyError::Throttled { retry_after_seconds, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        }
        response
    }
}

/// The fields the proxy reads itself; the rest of the body is only walked for text.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    safety_identifier: Option<&'a RawValue>,
}

/// Who wrote a piece of a request's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The end user: the prompt proper.
    User,
    /// The application: the Responses API's `instructions`, system and developer
    /// messages or input items.
    Application,
    /// Neither: a tool's or function's result (`tool` and `function` messages, the
    /// Responses API's `function_call_output`, `custom_tool_call_output` and `mcp_call`
    /// items), where indirect injection arrives.
    Untrusted,
}

/// The origin of each item of `messages` and of `input`.
struct Origins {
    messages: Vec<Origin>,
    input: Vec<Origin>,
}

impl Origins {
    /// Who wrote a string, by its channel.
    fn of(&self, channel: &str) -> Origin {
        let mut path = channel.split('.').skip(1);
        let items = match path.next() {
            Some("instructions") => return Origin::Application,
            Some("messages") => &self.messages,
            Some("input") => &self.input,
            _ => return Origin::User,
        };
        path.next().and_then(|p| p.parse::<usize>().ok()).and_then(|p| items.get(p).copied()).unwrap_or(Origin::User)
    }
}

/// An item of `messages` or `input`, for its role or type.
#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    role: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl Item {
    fn origin(&self) -> Origin {
        match (self.role.as_deref(), self.kind.as_deref()) {
            (Some("system" | "developer"), _) => Origin::Application,
            (Some("tool" | "function"), _) => Origin::Untrusted,
            (_, Some("function_call_output" | "custom_tool_call_output" | "mcp_call")) => Origin::Untrusted,
            _ => Origin::User,
        }
    }
}

impl Envelope<'_> {
    /// Who wrote each item of `messages` and `input`, read once per request.
    fn origins(&self) -> Origins {
        let origins = |items: Option<&RawValue>| -> Vec<Origin> {
            let items = items.and_then(|items| serde_json::from_str::<Vec<&RawValue>>(items.get()).ok());
            items
                .unwrap_or_default()
                .into_iter()
                .map(|item| serde_json::from_str::<Item>(item.get()).map_or(Origin::User, |item| item.origin()))
                .collect()
        };
        Origins { messages: origins(self.messages), input: origins(self.input) }
    }

    fn has(&self, field: &str) -> bool {
        let value = match field {
            "messages" => self.messages,
            "input" => self.input,
            _ => self.prompt,
        };
        value.is_some_and(|v| v.get() != "null")
    }

    /// The end user named in the body (`user`, or the Responses API's
    /// `safety_identifier`), when it is a string.
    fn user(&self) -> Option<String> {
        [self.user, self.safety_identifier].into_iter().flatten().find_map(|v| serde_json::from_str(v.get()).ok())
    }
}

pub async fn chat_completions(State(state): State<Arc<AppState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    relay(&state, &CHAT_COMPLETIONS, &headers, bytes).await
}

pub async fn responses(State(state): State<Arc<AppState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    relay(&state, &RESPONSES, &headers, bytes).await
}

pub async fn completions(State(state): State<Arc<AppState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    relay(&state, &COMPLETIONS, &headers, bytes).await
}

pub async fn embeddings(State(state): State<Arc<AppState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    relay(&state, &EMBEDDINGS, &headers, bytes).await
}

/// `GET /v1/models`: the upstream's model list, passed through (no prompt, no user).
pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    pass_through(&state, MODELS.to_owned(), &headers).await
}

pub async fn model(State(state): State<Arc<AppState>>, Path(model): Path<String>, headers: HeaderMap) -> Response {
    // The name goes into a path: keep it to the characters model names use.
    if model.is_empty() || !model.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        return ProxyError::BadRequest("not a model name".into()).into_response();
    }
    pass_through(&state, format!("{MODELS}/{model}"), &headers).await
}

async fn pass_through(state: &AppState, path: String, headers: &HeaderMap) -> Response {
    let Some(upstream) = state.upstream.as_ref() else {
        return ProxyError::NotConfigured.into_response();
    };
    match upstream.send(Method::GET, &path, headers, None).await {
        Ok(answer) if answer.status().is_success() => upstream::relay_unchanged(answer),
        Ok(answer) => upstream::error_answer(answer).await,
        Err(e) => e.into_response(),
    }
}

async fn relay(state: &Arc<AppState>, route: &Route, headers: &HeaderMap, bytes: Bytes) -> Response {
    let mut request_id = None;
    let mut response =
        decide_and_forward(state, route, headers, bytes, &mut request_id).await.unwrap_or_else(|e| e.into_response());
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert("x-godel-request-id", id);
    }
    response
}

/// The decision on a request and, if allowed, the upstream's answer; `request_id` is
/// set once the guard has decided, so every answer after that carries it.
async fn decide_and_forward(
    state: &Arc<AppState>,
    route: &Route,
    headers: &HeaderMap,
    bytes: Bytes,
    request_id: &mut Option<String>,
) -> Result<Response, ProxyError> {
    let upstream = state.upstream.as_ref().ok_or(ProxyError::NotConfigured)?;
    if super::error::require_json(headers).is_err() {
        return Err(ProxyError::NotJson);
    }
    let segments = text::segments(&bytes).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    // `segments` has checked that the body is a JSON object.
    let envelope: Envelope<'_> = serde_json::from_slice(&bytes).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    if !envelope.has(route.required) {
        return Err(ProxyError::BadRequest(format!("field `{}` is required", route.required)));
    }
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let user_id = header_text(&upstream.config().user_header).or_else(|| envelope.user()).ok_or_else(|| {
        ProxyError::BadRequest(format!(
            "the end user is unknown: send the `{}` header or the `user` field",
            upstream.config().user_header
        ))
    })?;
    let tier = header_text(&upstream.config().tier_header);
    let origins = envelope.origins();
    let (mut user, mut app, mut untrusted) = (Vec::new(), Vec::new(), Vec::new());
    for segment in segments {
        match origins.of(&segment.channel) {
            Origin::User => user.push(segment),
            Origin::Application => app.push(segment),
            Origin::Untrusted => untrusted.push(segment),
        }
    }
    let (prompt, starts) = text::joined(&user);
    let (instructions, instruction_starts) = text::joined(&app);
    let untrusted_texts: Vec<&str> = untrusted.iter().map(|s| s.text.as_str()).collect();
    let subject = Subject {
        user_id: &user_id,
        tier: tier.as_deref(),
        prompt: &prompt,
        instructions: &instructions,
        untrusted: &untrusted_texts,
    };
    let outcome = state.guard.inspect(subject).await.map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    *request_id = Some(outcome.request_id.clone());
    match outcome.decision {
        Decision::Throttle(why) => {
            Err(ProxyError::Throttled { retry_after_seconds: outcome.retry_after_ms.div_ceil(1000).max(1), why })
        }
        Decision::Block => {
            let untrusted = outcome.untrusted_findings.concat();
            Err(ProxyError::Blocked { findings: [outcome.findings, outcome.instruction_findings, untrusted].concat() })
        }
        Decision::Allow => {
            let mut replacements = redactions(&user, &starts, &outcome.findings);
            replacements.extend(redactions(&app, &instruction_starts, &outcome.instruction_findings));
            for (segment, findings) in untrusted.iter().zip(&outcome.untrusted_findings) {
                replacements.extend(redactions(std::slice::from_ref(segment), &[0], findings));
            }
            let body = if replacements.is_empty() { bytes } else { Bytes::from(text::splice(&bytes, replacements)) };
            let answer = upstream.send(Method::POST, route.path, headers, Some(body)).await?;
            if !answer.status().is_success() {
                return Ok(upstream::error_answer(answer).await);
            }
            if !route.answer_is_text {
                return Ok(upstream::relay_unchanged(answer));
            }
            answer::relay(state.clone(), outcome, answer).await
        }
    }
}

/// Every `redact` finding masked inside the string it falls in, as replacements for
/// [`text::splice`]; none when nothing is masked (the body then goes upstream exactly as
/// received).
fn redactions(segments: &[Segment], starts: &[usize], findings: &[Finding]) -> Vec<(Range<usize>, String)> {
    let mut replacements = Vec::new();
    for (segment, &start) in segments.iter().zip(starts) {
        let end = start + segment.text.len();
        let spans: Vec<(usize, usize, Option<&str>)> = findings
            .iter()
            .filter(|f| f.action == Action::Redact && f.start < end && f.end > start)
            .map(|f| (f.start.max(start) - start, f.end.min(end) - start, Some(&*f.rule)))
            .collect();
        if !spans.is_empty() {
            replacements.push((segment.literal.clone(), mask(&segment.text, spans)));
        }
    }
    replacements
}

#[cfg(test)]
mod tests {
    use super::*;
    use godel_crds::Severity;

    #[test]
    fn redaction_is_spliced_into_the_string_it_falls_in() {
        let body = br#"{"seed": 12345678901234567890123, "messages": [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "mail jane@example.com"}]}]}"#;
        let segments = text::segments(body).unwrap();
        let (prompt, starts) = text::joined(&segments);
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
        let out = String::from_utf8(text::splice(body, redactions(&segments, &starts, &[finding]))).unwrap();
        assert!(out.contains(r#""text": "mail [REDACTED:email-address]""#), "{out}");
        assert!(out.starts_with(r#"{"seed": 12345678901234567890123, "#), "numbers pass unchanged: {out}");
        assert!(redactions(&segments, &starts, &[]).is_empty());
    }

    #[test]
    fn system_developer_and_instructions_are_the_applications_and_tool_results_are_untrusted() {
        let body = br#"{"instructions": "be safe", "messages": [{"role": "system", "content": "s"},
            {"role": "developer", "content": [{"type": "text", "text": "d"}]}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"}, {"role": "tool", "tool_call_id": "c1", "content": "t"}],
            "input": [{"role": "system", "content": "i"}, "plain",
            {"type": "function_call_output", "call_id": "c2", "output": "f"}]}"#;
        let envelope: Envelope<'_> = serde_json::from_slice(body).unwrap();
        let origins = envelope.origins();
        let of = |origin: Origin| -> Vec<String> {
            text::segments(body)
                .unwrap()
                .into_iter()
                .filter(|s| origins.of(&s.channel) == origin)
                .map(|s| s.text)
                .collect()
        };
        assert_eq!(of(Origin::Application), ["be safe", "s", "d", "i"]);
        assert_eq!(of(Origin::Untrusted), ["t", "f"]);
        assert_eq!(of(Origin::User), ["u", "a", "plain"]);
    }
}
