//! `POST /v1/inspect`: the engine's outcome in the guard's own JSON (DESIGN.md, HTTP API).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::finding::{WireFinding, wire};
use super::{ApiError, AppState, error};
use crate::engine::{InspectError, Subject};
use crate::limiter::Throttle;

/// No `Debug`: it holds the raw user id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InspectRequest {
    user_id: String,
    #[serde(default)]
    tier: Option<String>,
    prompt: String,
    /// The application's own text for the model (its system prompt): see
    /// [`Subject::instructions`].
    #[serde(default)]
    instructions: String,
    /// Tool and function results and retrieved documents the model will read, each
    /// apart: see [`Subject::untrusted`].
    #[serde(default)]
    untrusted: Vec<String>,
    /// The model the prompt is for: its tokenizer counts the prompt when `tokens` is
    /// not given, its weights price it.
    #[serde(default)]
    model: Option<String>,
    /// Tokens to charge against the tier's token limits, when the caller counted them.
    #[serde(default)]
    tokens: Option<u64>,
}

/// A finding in one of the request's `untrusted` texts: which one, and where in it.
#[derive(Serialize)]
struct UntrustedFinding<'a> {
    index: usize,
    #[serde(flatten)]
    finding: WireFinding<'a>,
}

#[derive(Serialize)]
struct Verdict<'a> {
    decision: &'static str,
    findings: Vec<WireFinding<'a>>,
    rate_limit: RateLimit,
    request_id: &'a str,
    /// Model tokens charged against the tier's token limits; present only when it has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<u64>,
    /// Why a prompt was throttled: `rate_limited`, `quarantined`, `token_limited` or
    /// `over_budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Throttle>,
    /// The prompt with `redact` findings masked, present only when something was masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    redacted_prompt: Option<String>,
    /// Findings in `instructions`, their offsets into them; present only when some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    instruction_findings: Vec<WireFinding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacted_instructions: Option<String>,
    /// Findings in `untrusted`, each naming its text by `index`; present only when some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    untrusted_findings: Vec<UntrustedFinding<'a>>,
    /// The `untrusted` texts with `redact` findings masked (`null` where nothing was),
    /// present only when something was masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    redacted_untrusted: Option<Vec<Option<String>>>,
}

#[derive(Serialize)]
struct RateLimit {
    remaining: u64,
    retry_after_ms: u64,
}

pub(super) async fn inspect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    error::require_json(&headers)?;
    let request: InspectRequest = error::parse_json(&body)?;
    let untrusted: Vec<&str> = request.untrusted.iter().map(String::as_str).collect();
    let limits = state.tenant_limits(request.tier.as_deref(), &headers).map_err(InspectError::from)?;
    let subject = Subject {
        user_id: &request.user_id,
        tier: request.tier.as_deref(),
        prompt: &request.prompt,
        instructions: &request.instructions,
        untrusted: &untrusted,
        model: request.model.as_deref(),
        max_output_tokens: None,
        tokens: request.tokens,
        limits,
        stream: None,
    };
    let outcome = state.guard.inspect(subject).await?;
    let verdict = Verdict {
        decision: outcome.decision.as_str(),
        findings: wire(&outcome.findings),
        rate_limit: RateLimit { remaining: outcome.remaining, retry_after_ms: outcome.retry_after_ms },
        request_id: &outcome.request_id,
        tokens: outcome.charged_tokens(),
        reason: outcome.decision.throttle(),
        redacted_prompt: outcome.redacted(&request.prompt),
        instruction_findings: wire(&outcome.instruction_findings),
        redacted_instructions: outcome.redacted_instructions(&request.instructions),
        untrusted_findings: outcome
            .untrusted_findings
            .iter()
            .enumerate()
            .flat_map(|(index, list)| list.iter().map(move |f| UntrustedFinding { index, finding: f.into() }))
            .collect(),
        redacted_untrusted: {
            let masked: Vec<Option<String>> =
                request.untrusted.iter().enumerate().map(|(i, text)| outcome.redacted_untrusted(i, text)).collect();
            masked.iter().any(Option::is_some).then_some(masked)
        },
    };
    Ok(Json(verdict).into_response())
}
