//! The OpenAI- and Anthropic-compatible proxy, guarding both directions. A request to one
//! of the inspected [`ROUTES`] (chat completions, responses, completions, embeddings,
//! Anthropic's messages) runs the
//! same decision as `/v1/inspect` over every text a model reads in it ([`text`], with
//! who wrote each from [`request`]); the guard answers 403 (block) or 429 (throttle)
//! itself ([`error`]), and forwards an allowed request byte for byte but for its `redact`
//! spans ([`upstream`]). The model's answer comes back through the answer traps, whole
//! or as a stream ([`relay`], [`sse`], [`holdback`]). Errors take the route's
//! [`dialect`]. `GET /v1/models` and Anthropic's `count_tokens` pass through.

mod dialect;
mod error;
#[cfg(feature = "fuzzing")]
pub(super) mod fuzzing;
mod holdback;
mod relay;
mod request;
mod sse;
mod text;
mod upstream;
mod usage;

use std::ops::Range;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use futures::StreamExt;
use godel_config::{Action, OutputAction};
use godel_traps::Finding;
use std::time::Duration;

use super::AppState;
use crate::engine::{Decision, StreamLease, Subject, mask};
use dialect::Dialect;
use error::ProxyError;
use relay::Reading;
use request::{Envelope, Origin};
use text::Segment;

use upstream::Call;
pub use upstream::{Upstream, UpstreamError};

/// A route the proxy inspects: its path, the field that must be present, and whether
/// its answer holds text (an embedding does not, and must not be rewritten).
pub(super) struct Route {
    pub path: &'static str,
    required: &'static str,
    answer_is_text: bool,
    /// Whether a stream's usage comes only when asked for (`stream_options`); the
    /// Responses and Messages APIs always send it.
    usage_on_request: bool,
    dialect: Dialect,
    /// What the call does, as OpenTelemetry's GenAI conventions name it
    /// (`gen_ai.operation.name`).
    operation: &'static str,
}

pub(super) const CHAT_COMPLETIONS: Route = Route {
    path: "/v1/chat/completions",
    required: "messages",
    answer_is_text: true,
    usage_on_request: true,
    dialect: Dialect::OpenAi,
    operation: "chat",
};
pub(super) const RESPONSES: Route = Route {
    path: "/v1/responses",
    required: "input",
    answer_is_text: true,
    usage_on_request: false,
    dialect: Dialect::OpenAi,
    operation: "chat",
};
pub(super) const COMPLETIONS: Route = Route {
    path: "/v1/completions",
    required: "prompt",
    answer_is_text: true,
    usage_on_request: true,
    dialect: Dialect::OpenAi,
    operation: "text_completion",
};
pub(super) const EMBEDDINGS: Route = Route {
    path: "/v1/embeddings",
    required: "input",
    answer_is_text: false,
    usage_on_request: false,
    dialect: Dialect::OpenAi,
    operation: "embeddings",
};
/// Anthropic's Messages API: `system` is the application's, tool use and tool result
/// blocks are untrusted ([`request`]); its stream events carry text in `delta.text`.
pub(super) const MESSAGES: Route = Route {
    path: "/v1/messages",
    required: "messages",
    answer_is_text: true,
    usage_on_request: false,
    dialect: Dialect::Anthropic,
    operation: "chat",
};
/// The routes whose requests are inspected, each served by [`guarded`].
pub(super) const ROUTES: [&Route; 5] = [&CHAT_COMPLETIONS, &RESPONSES, &COMPLETIONS, &EMBEDDINGS, &MESSAGES];
pub(super) const MODELS: &str = "/v1/models";
pub(super) const MODEL: &str = "/v1/models/{model}";
pub(super) const COUNT_TOKENS: &str = "/v1/messages/count_tokens";

/// `GET /v1/models`: the upstream's model list, passed through (no prompt, no user).
pub(super) async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    pass_through(&state, Method::GET, MODELS.to_owned(), &headers, None, Dialect::OpenAi).await
}

/// `POST /v1/messages/count_tokens`: Anthropic's count of a request's tokens, passed
/// through unread: no model reads it and nothing is charged.
pub(super) async fn count_tokens(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if super::error::require_json(&headers).is_err() {
        return ProxyError::NotJson.respond(Dialect::Anthropic);
    }
    pass_through(&state, Method::POST, COUNT_TOKENS.to_owned(), &headers, Some(body), Dialect::Anthropic).await
}

pub(super) async fn model(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !is_model_name(&model) {
        return ProxyError::BadRequest("not a model name".into()).into_response();
    }
    pass_through(&state, Method::GET, format!("{MODELS}/{model}"), &headers, None, Dialect::OpenAi).await
}

/// The name goes into the upstream's path: only the characters model names use, and
/// not a name of dots alone, which the URL would read as a step up the path
/// (`/v1/models/%2E%2E` would reach the upstream's `/v1/`).
fn is_model_name(name: &str) -> bool {
    !name.bytes().all(|b| b == b'.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

async fn pass_through(
    state: &AppState,
    method: Method,
    path: String,
    headers: &HeaderMap,
    body: Option<Bytes>,
    dialect: Dialect,
) -> Response {
    let Some(upstream) = state.upstream.as_ref() else {
        return ProxyError::NotConfigured.respond(dialect);
    };
    let call = Call { method, path: &path, operation: None, dialect };
    match upstream.send(call, headers, body).await {
        Ok(answer) if answer.status().is_success() => upstream::relay_unchanged(answer),
        Ok(answer) => upstream::error_answer(answer, dialect).await,
        Err(e) => e.respond(dialect),
    }
}

/// The one handler of every inspected route: the route says which field it requires and
/// whether its answer is text.
pub(super) fn guarded(route: &'static Route) -> MethodRouter<Arc<AppState>> {
    post(move |State(state): State<Arc<AppState>>, headers: HeaderMap, bytes: Bytes| async move {
        decide_then_relay(&state, route, &headers, bytes).await
    })
}

async fn decide_then_relay(state: &Arc<AppState>, route: &Route, headers: &HeaderMap, bytes: Bytes) -> Response {
    let mut request_id = None;
    let mut response = decide_and_forward(state, route, headers, bytes, &mut request_id)
        .await
        .unwrap_or_else(|e| e.respond(route.dialect));
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
            "the end user is unknown: send the `{}` header, the `user` field or `metadata.user_id`",
            upstream.config().user_header
        ))
    })?;
    let tier = header_text(&upstream.config().tier_header);
    let limits = state.tenant_limits(tier.as_deref(), headers).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    let model = envelope.model();
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
        model: model.as_deref(),
        max_output_tokens: envelope.max_output_tokens(),
        tokens: None,
        limits,
        // The lease outlives a guard that dies with it by the upstream's deadline.
        stream: envelope.streams().then(|| Duration::from_secs(upstream.config().timeout_seconds + 5)),
    };
    let mut outcome = state.guard.inspect(subject).await.map_err(|e| ProxyError::BadRequest(e.to_string()))?;
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
            let streams = envelope.streams();
            // Where the answer's usage is read, a stream that would not carry it is asked to.
            let reads_usage = outcome.metering.is_metered() || state.guard.output_action() != OutputAction::None;
            let usage_edit = (streams && route.usage_on_request && reads_usage)
                .then(|| usage::ask_for_usage(&bytes, envelope.stream_options))
                .flatten();
            let usage = Reading { usage: reads_usage, unasked_usage: usage_edit.is_some() };
            let mut edits = text::as_literals(replacements);
            edits.extend(usage_edit);
            let body = if edits.is_empty() { bytes } else { Bytes::from(text::splice_raw(&bytes, edits)) };
            let lease = outcome.lease.take();
            let call = Call {
                method: Method::POST,
                path: route.path,
                operation: Some(route.operation),
                dialect: route.dialect,
            };
            let answer = upstream.send(call, headers, Some(body)).await?;
            let response = if !answer.status().is_success() {
                upstream::error_answer(answer, route.dialect).await
            } else if !route.answer_is_text {
                upstream::relay_unchanged(answer)
            } else {
                relay::relay(state.clone(), outcome, answer, usage, route.dialect).await?
            };
            Ok(hold(lease, response))
        }
    }
}

/// The response with `lease` held until its body has been sent or dropped.
fn hold(lease: Option<StreamLease>, response: Response) -> Response {
    let Some(lease) = lease else { return response };
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &lease;
            chunk
        }))
    })
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
    use godel_config::Severity;

    #[test]
    fn model_names_are_the_characters_models_use_and_never_dots_alone() {
        for name in ["gpt-4o-mini", "claude-3-5-sonnet-20241022", "ft:gpt-4o:acme:v1", "llama3.1_8b", ".hidden"] {
            assert!(is_model_name(name), "{name}");
        }
        for name in ["", ".", "..", "...", "a/b", "a b", "a%2Fb", "m?x=1"] {
            assert!(!is_model_name(name), "{name}");
        }
    }

    #[test]
    fn redaction_is_spliced_into_the_string_it_falls_in() {
        let body = br#"{"seed": 12345678901234567890123, "messages": [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "mail jane@example.com"}]}]}"#;
        let segments = text::segments(body).unwrap();
        let (prompt, starts) = text::joined(&segments);
        assert_eq!(prompt, "be brief\nmail jane@example.com");
        let start = prompt.find("jane").unwrap();
        let finding = Finding {
            trap: godel_traps::TrapKind::Regex,
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
}
