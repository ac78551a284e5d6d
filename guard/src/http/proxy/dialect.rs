//! The two API dialects the proxy speaks: OpenAI's (chat completions, responses,
//! completions, embeddings) and Anthropic's Messages API. The text a model reads is
//! found the same way in both; they differ in the error a client's SDK raises, in a
//! stream's error event, and in what the upstream's own error bodies look like.

use axum::http::StatusCode;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// The API's provider, as OpenTelemetry's GenAI conventions name it
    /// (`gen_ai.provider.name`).
    pub(super) fn provider(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
        }
    }

    /// An error body the dialect's SDKs raise as the API's own: OpenAI's
    /// `{"error": {"message", "type", "param", "code"}}` (`code` a string), or
    /// Anthropic's `{"type": "error", "error": {"type", "message"}}`, its `type` the one
    /// Anthropic gives the status and the guard's `code` beside it.
    pub(super) fn error_body(self, status: StatusCode, kind: &str, code: &str, message: &str) -> Value {
        match self {
            Dialect::OpenAi => json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
            Dialect::Anthropic => {
                json!({"type": "error", "error": {"type": anthropic_type(status), "message": message, "code": code}})
            }
        }
    }

    /// A server-sent event carrying that error, which ends a stream the SDKs then raise:
    /// a bare `data:` event for OpenAI, an `error` event for Anthropic.
    pub(super) fn error_event(self, status: StatusCode, kind: &str, code: &str, message: &str) -> Vec<u8> {
        let body = self.error_body(status, kind, code, message);
        match self {
            Dialect::OpenAi => format!("data: {body}\n\n"),
            Dialect::Anthropic => format!("event: error\ndata: {body}\n\n"),
        }
        .into_bytes()
    }

    /// Whether an upstream's error body is already one of the dialect's error objects,
    /// which the client's SDK reads (anything else is replaced).
    pub(super) fn is_error(self, body: &Value) -> bool {
        let has_message = body["error"]["message"].is_string();
        match self {
            Dialect::OpenAi => has_message,
            Dialect::Anthropic => has_message && body["type"] == "error",
        }
    }
}

/// Anthropic's error `type` for a status, as its API documents them.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 415 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_writes_and_recognises_its_own_errors() {
        let openai = Dialect::OpenAi.error_body(StatusCode::FORBIDDEN, "guardrail_blocked", "guardrail_blocked", "no");
        assert_eq!(openai["error"]["code"], "guardrail_blocked");
        let anthropic =
            Dialect::Anthropic.error_body(StatusCode::TOO_MANY_REQUESTS, "tokens", "rate_limit_exceeded", "no");
        assert_eq!(
            (anthropic["type"].as_str(), anthropic["error"]["type"].as_str()),
            (Some("error"), Some("rate_limit_error"))
        );
        assert!(Dialect::OpenAi.is_error(&openai) && Dialect::Anthropic.is_error(&anthropic));
        assert!(!Dialect::Anthropic.is_error(&openai), "an OpenAI error is not what an Anthropic SDK reads");
        let event = Dialect::Anthropic.error_event(StatusCode::FORBIDDEN, "k", "c", "withheld");
        assert!(event.starts_with(b"event: error\ndata: {") && event.ends_with(b"}\n\n"));
    }
}
