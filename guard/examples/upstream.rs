//! The load benchmark's upstream (`scripts/load-bench.sh`): an OpenAI-compatible chat
//! completions endpoint that answers at once with a fixed completion, so that what the
//! proxy adds to a request is all there is to measure.
//!
//! Run: `cargo run --release -p godel-guard --example upstream -- 127.0.0.1:8091`

use axum::Json;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};

async fn chat(body: Bytes) -> Json<Value> {
    std::hint::black_box(body.len());
    Json(json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Here is a short, ordinary answer with nothing to find in it."}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32},
    }))
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8091".to_owned());
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        axum::serve(listener, axum::Router::new().route("/v1/chat/completions", post(chat))).await
    })
}
