//! Request bodies are read here, before any handler, under three bounds: a size cap, a
//! total time, and a minimum transfer rate after a short grace period. A client that
//! announces more than it sends, or trickles a byte a second, is answered 408 and its
//! connection freed, instead of holding a handler (and a file descriptor) for as long as
//! it likes. Handlers then see a complete body in memory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::ApiError;

/// Longest a request body may take to arrive (`--body-timeout-ms`).
pub(crate) const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Bytes per second a body must average after the grace period (`--min-body-rate`).
pub(crate) const DEFAULT_MIN_BODY_RATE: u64 = 1024;

/// Bounds on reading one request body.
#[derive(Clone, Debug)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// The longest any body may take.
    pub timeout: Duration,
    /// Bytes per second a body must average once `grace` has passed.
    pub min_rate: u64,
    pub grace: Duration,
}

impl BodyLimits {
    /// The defaults the CLI documents, for a body of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            min_rate: DEFAULT_MIN_BODY_RATE,
            grace: Duration::from_secs(5),
        }
    }

    /// When the body must have arrived by, given what has arrived so far: the grace
    /// period plus the time `received` bytes take at the minimum rate, never past the
    /// total timeout.
    fn deadline(&self, started: Instant, received: usize) -> Instant {
        let at_min_rate = Duration::from_secs_f64(received as f64 / self.min_rate.max(1) as f64);
        started + (self.grace + at_min_rate).min(self.timeout)
    }
}

fn too_large() -> Response {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body exceeds the size limit")
        .into_response()
}

/// Most of an oversized body read and thrown away before the 413: a server that answers
/// and closes while the client is still sending makes the client's kernel see a reset,
/// and the client a broken pipe instead of the answer. Past this, the answer goes at once.
const DISCARD_LIMIT: usize = 16 << 20;

pub(crate) async fn read(State(limits): State<Arc<BodyLimits>>, request: Request, next: Next) -> Response {
    let (parts, mut body) = request.into_parts();
    let announced =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut too_big = announced.is_some_and(|n| n > limits.max_bytes as u64);
    if announced.is_some_and(|n| n > DISCARD_LIMIT as u64) {
        return too_large();
    }
    let started = Instant::now();
    let mut buffer = Vec::with_capacity(if too_big { 0 } else { announced.map_or(0, |n| n as usize) });
    let mut received = 0;
    loop {
        let frame = match tokio::time::timeout_at(limits.deadline(started, received), body.frame()).await {
            Err(_) => {
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                )
                .into_response();
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the request body could not be read")
                    .into_response();
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            received += data.len();
            too_big |= received > limits.max_bytes;
            if too_big {
                buffer = Vec::new();
                if received > DISCARD_LIMIT {
                    return too_large();
                }
            } else {
                buffer.extend_from_slice(&data);
            }
        }
    }
    if too_big {
        return too_large();
    }
    next.run(Request::from_parts(parts, Body::from(buffer))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_what_arrived_and_stops_at_the_timeout() {
        let limits = BodyLimits {
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(30),
            min_rate: 1000,
            grace: Duration::from_secs(5),
        };
        let t = Instant::now();
        assert_eq!(limits.deadline(t, 0), t + Duration::from_secs(5));
        assert_eq!(limits.deadline(t, 10_000), t + Duration::from_secs(15));
        assert_eq!(limits.deadline(t, 1 << 20), t + Duration::from_secs(30));
    }
}
