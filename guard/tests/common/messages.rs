//! Anthropic's Messages API on the local upstream ([`super::upstream`]): the request's
//! `model` picks the behaviour as it does for chat completions.
//!
//! - any model: `Hello!`, or with `stream: true` Anthropic's events (`message_start`,
//!   `content_block_start`, `ping`, three `content_block_delta`s, `content_block_stop`,
//!   `message_delta` with the output tokens, `message_stop`);
//! - `leak`: an answer carrying an AWS key; streamed, the key split across deltas;
//! - `fail-500`: a 500 with an HTML traceback.
//!
//! Usage is [`USAGE`](super::upstream::USAGE), the input in `message_start`, the output
//! in `message_delta`. `count_tokens` answers 12.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::upstream::{LEAKED_KEY, Recorder, USAGE, other, record, sse};

fn event(kind: &str, data: Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

fn delta(text: &str) -> String {
    event(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": text}}),
    )
}

/// The events of a streamed answer of `content`, in `pieces` of at most that many bytes.
fn events(model: &str, content: &str, pieces: usize) -> Vec<String> {
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": USAGE.0, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    let mut rest = content;
    while !rest.is_empty() {
        let cut = rest.len().min(pieces);
        events.push(delta(&rest[..cut]));
        rest = &rest[cut..];
    }
    events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": USAGE.1}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}

pub(crate) async fn messages(recorder: Recorder, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    record(&recorder, headers, body);
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    if model == "fail-500" {
        let traceback = "<html><pre>Traceback (most recent call last):\n  File \"/srv/internal/app.py\"</pre></html>";
        return (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/html")], traceback).into_response();
    }
    let leaks = model == "leak";
    let content = if leaks {
        format!("Here is the deploy key you asked for: {LEAKED_KEY}, keep it safe.")
    } else if request["stream"] == true {
        "part0: the quick brown fox. part1: jumps over the lazy dog. part2: then naps.".to_owned()
    } else {
        "Hello!".to_owned()
    };
    if request["stream"] != true {
        return (
            [("request-id", "req_anthropic_1"), ("anthropic-organization-id", "org-1"), ("x-internal-host", "gpu-7")],
            Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": content}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": USAGE.0, "output_tokens": USAGE.1}})),
        )
            .into_response();
    }
    sse(events(&model, &content, if leaks { 7 } else { 30 }), Duration::from_millis(5))
}

pub(crate) async fn count_tokens(recorder: Recorder, headers: HeaderMap, body: Bytes) -> Json<Value> {
    other(recorder, headers, body, json!({"input_tokens": 12})).await
}
