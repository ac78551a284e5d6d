use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::InspectError;

/// An error answer: `{"error": {"code": ..., "message": ...}}`. Messages name the
/// field or limit at fault and never repeat request content.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not valid JSON: {}", serde_reason(&e.body_text())),
            ),
            JsonRejection::JsonDataError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", serde_reason(&e.body_text()))
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body exceeds the size limit")
            }
            other => Self::new(other.status(), "bad_request", other.body_text()),
        }
    }
}

/// axum's text is "Failed to deserialize the JSON body into the target type: <path>:
/// <serde message>"; keep the part that names the field and what was wrong. serde
/// quotes unexpected string values, so anything in quotes is cut to keep user input
/// (possibly a user id) out of the answer.
fn serde_reason(text: &str) -> String {
    let reason = text.split_once(": ").map_or(text, |(_, rest)| rest);
    let mut out = String::with_capacity(reason.len());
    let mut in_quotes = false;
    for c in reason.chars() {
        match c {
            '"' if !in_quotes => {
                in_quotes = true;
                out.push_str("\"…");
            }
            '"' => {
                in_quotes = false;
                out.push('"');
            }
            _ if in_quotes => {}
            _ => out.push(c),
        }
    }
    out
}

impl From<InspectError> for ApiError {
    fn from(e: InspectError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_cut_from_messages() {
        let text = "Failed to deserialize the JSON body into the target type: tier: invalid type: string \"alice@example.com\", expected u32 at line 1 column 9";
        let reason = serde_reason(text);
        assert!(!reason.contains("alice"), "{reason}");
        assert!(reason.starts_with("tier: invalid type"), "{reason}");
    }
}
