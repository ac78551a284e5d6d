use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// Readiness: 200 only when the guard can decide; 503 with the reason otherwise and
/// while draining, so the Service stops sending traffic before the pod exits.
pub(super) async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    match state.readiness() {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "reason": reason}))),
    }
}

/// Liveness: the process answers. Deliberately independent of Redis and draining, so a
/// backend outage never makes Kubernetes restart healthy pods.
pub(super) async fn livez() -> Json<Value> {
    Json(json!({"status": "alive"}))
}
