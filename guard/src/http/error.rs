use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_json::json;
use serde_path_to_error::Segment;

use crate::engine::InspectError;

/// An error answer: `{"error": {"code": ..., "message": ..., "type": ...}}`, which reads
/// as the guard's own error shape and as OpenAI's (whose clients look for `type` and a
/// string `code`). Messages name the field or limit at fault and never repeat request
/// content.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// What the client is told, for the fuzz target that checks it tells nothing more.
    #[cfg(feature = "fuzzing")]
    pub(super) fn message(&self) -> &str {
        &self.message
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let body = json!({"error": {"code": self.code, "message": self.message, "type": kind}});
        (self.status, Json(body)).into_response()
    }
}

/// 415 unless the request says its body is JSON.
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected `Content-Type: application/json`",
        ))
    }
}

/// Parses a JSON request body. Errors say where and what kind of thing was wrong, in
/// words of the API's own schema: never a value from the request (a user id sent as a
/// number must not come back in the message, nor an unknown field's name).
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut deserializer);
    let (path, error) = match parsed.map(|value| (value, deserializer.end())) {
        Ok((value, Ok(()))) => return Ok(value),
        Ok((_, Err(trailing))) => (Vec::new(), trailing),
        Err(e) => (e.path().iter().cloned().collect(), e.into_inner()),
    };
    let (code, message) = match error.classify() {
        Category::Data => {
            let reason = data_reason(&error.to_string());
            // Struct field names are the schema's; anything else in a path (a map key,
            // and an unknown field's own name, which ends its path) came from the request.
            let known = if reason.starts_with("unknown field") {
                path.split_last().map_or(&[][..], |(_, parent)| parent)
            } else {
                &path[..]
            };
            let names: Option<Vec<&str>> = known
                .iter()
                .map(|segment| match segment {
                    Segment::Map { key } if is_schema_name(key) => Some(key.as_str()),
                    _ => None,
                })
                .collect();
            let message = match names.filter(|names| !names.is_empty()) {
                Some(names) => format!("{}: {reason}", names.join(".")),
                None => reason,
            };
            ("invalid_request", message)
        }
        Category::Syntax | Category::Eof | Category::Io => {
            ("invalid_json", format!("body is not valid JSON at line {} column {}", error.line(), error.column()))
        }
    };
    Err(ApiError::new(StatusCode::BAD_REQUEST, code, message))
}

fn is_schema_name(segment: &str) -> bool {
    !segment.is_empty() && segment.len() <= 32 && segment.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// serde's data errors, reduced to their kind and the expected type. serde writes the
/// offending value after the kind (``invalid type: integer `98765`, expected …``) and
/// the expectation, which comes from the schema, after `, expected`; only that is kept.
fn data_reason(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    let expected = message.rsplit_once(", expected ").map(|(_, e)| e);
    let kind =
        ["invalid type", "invalid value", "invalid length", "unknown field", "unknown variant", "duplicate field"]
            .into_iter()
            .find(|kind| message.starts_with(kind));
    match (kind, expected) {
        (Some(kind), Some(expected)) => format!("{kind}, expected {expected}"),
        (Some(kind), None) => kind.to_owned(),
        (None, _) if message.starts_with("missing field `") => message.to_owned(),
        (None, _) => "invalid value".to_owned(),
    }
}

impl From<InspectError> for ApiError {
    fn from(e: InspectError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        #[serde(rename = "user_id")]
        _user_id: String,
        #[serde(rename = "tier")]
        _tier: Option<u32>,
    }

    fn message(body: &str) -> String {
        parse_json::<Request>(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn no_value_from_the_request_comes_back() {
        for (body, expected) in [
            (r#"{"user_id": 98765432101}"#, "user_id: invalid type, expected a string"),
            (r#"{"user_id": -98765.5}"#, "user_id: invalid type, expected a string"),
            (r#"{"user_id": true}"#, "user_id: invalid type, expected a string"),
            (r#"{"user_id": ["alice98765"]}"#, "user_id: invalid type, expected a string"),
            (r#"{"user_id": {"alice98765": 1}}"#, "user_id: invalid type, expected a string"),
            (r#"{"user_id": "x", "tier": "alice98765"}"#, "tier: invalid type, expected u32"),
            (r#"{"user_id": "x", "alice98765": 1}"#, "unknown field, expected `user_id` or `tier`"),
            // Found by the `inspect_body` fuzz target: a name that reads like the schema's.
            (r#"{"user_id": "x", "alice": 1}"#, "unknown field, expected `user_id` or `tier`"),
            (r#"{"user_id": "x", "user.i#": 1}"#, "unknown field, expected `user_id` or `tier`"),
            (r#"{"tier": 1}"#, "missing field `user_id`"),
            (r#"{"user_id": "alice98765"#, "body is not valid JSON at line 1 column 23"),
            (r#"{"user_id": "x"} alice98765"#, "body is not valid JSON at line 1 column 18"),
        ] {
            assert_eq!(message(body), expected, "{body}");
        }
    }
}
