//! The load benchmark's baseline (`scripts/load-bench.sh`): a bare axum endpoint with
//! the guard's axum, hyper and runtime settings that parses the same JSON as
//! `/v1/inspect` and answers a fixed verdict. What is left between it and the guard is
//! the guard's own work.
//!
//! Run: `cargo run --release -p godel-guard --example bare -- 127.0.0.1:8090`

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InspectRequest {
    user_id: String,
    #[serde(default)]
    tier: Option<String>,
    prompt: String,
}

async fn inspect(body: Bytes) -> Result<Json<Value>, StatusCode> {
    let request: InspectRequest = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    std::hint::black_box((&request.user_id, &request.tier, &request.prompt));
    Ok(Json(json!({
        "decision": "allow",
        "findings": [],
        "rate_limit": {"remaining": 99, "retry_after_ms": 0},
        "request_id": "0123456789abcdef0123456789abcdef",
    })))
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let app = axum::Router::new().route("/v1/inspect", post(inspect));
        axum::serve(listener, app).await
    })
}
