//! A local OpenAI-compatible upstream whose behaviour the request's `model` picks, and
//! which records what reached it (raw bytes and headers).
//!
//! - any model: `Hello!`, or with `stream: true` three sentence-long deltas and `[DONE]`;
//! - `leak`: an answer carrying an AWS key; streamed, the key is split across chunks;
//! - `leak-multiline`: the same stream with each event's JSON spread over several
//!   `data:` lines, as the SSE standard allows;
//! - `slow`: answers after three seconds;
//! - `long-stream`: a stream of one event a second for a minute;
//! - `fail-500`: a 500 with an HTML traceback;
//! - `fail-429`: an OpenAI-style 429 with `Retry-After` and rate-limit headers;
//! - `redirect`: a 307 to this upstream's `/v1/completions`.
//!
//! Every chat answer reports [`USAGE`] as OpenAI does: in a whole answer's `usage`, and
//! in a stream only when the request asks (`stream_options.include_usage`), with
//! `"usage": null` on every chunk and a last chunk of no choices carrying it.
//! `/v1/responses`, `/v1/completions` and `/v1/embeddings` answer in their own shapes;
//! `GET /v1/models` lists two models. Anthropic's Messages API is served too
//! ([`super::messages`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The prompt and answer tokens every chat answer reports.
pub(crate) const USAGE: (u64, u64) = (40, 25);

fn usage() -> Value {
    json!({"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1,
        "prompt_tokens_details": {"cached_tokens": 8}})
}

/// The key the `leak` model gives away.
pub(crate) const LEAKED_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

#[derive(Default)]
pub(crate) struct Seen {
    pub bodies: Vec<Bytes>,
    pub headers: Vec<HeaderMap>,
}

impl Seen {
    pub(crate) fn json(&self, i: usize) -> Value {
        serde_json::from_slice(&self.bodies[i]).unwrap()
    }
}

pub(crate) type Recorder = Arc<Mutex<Seen>>;

/// Notes a request that reached the upstream.
pub(crate) fn record(recorder: &Recorder, headers: HeaderMap, body: Bytes) {
    let mut seen = recorder.lock().unwrap();
    seen.bodies.push(body);
    seen.headers.push(headers);
}

/// A server-sent-event answer of `events`, one every `every`.
pub(crate) fn sse(events: Vec<String>, every: Duration) -> Response {
    let chunks = futures::stream::unfold(events.into_iter(), move |mut events| async move {
        let event = events.next()?;
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(event), events))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("x-request-id", "req_upstream_1")
        .body(Body::from_stream(chunks))
        .unwrap()
}

fn delta(text: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    )
}

/// The event of [`delta`] with its JSON pretty-printed, a `data:` line per JSON line.
fn delta_multiline(text: &str) -> String {
    let event = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    let lines: String =
        serde_json::to_string_pretty(&event).unwrap().lines().map(|line| format!("data: {line}\n")).collect();
    lines + "\n"
}

/// The upstream's own failures, as the model names them: an HTML 500 with internals, a
/// 429 with OpenAI's rate-limit headers, a redirect.
fn failure(model: &str) -> Option<Response> {
    match model {
        "fail-500" => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "text/html")],
                "<html><pre>Traceback (most recent call last):\n  File \"/srv/internal/app.py\", line 12</pre></html>",
            )
                .into_response(),
        ),
        "fail-429" => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", "1"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-request-id", "req_upstream_429"),
                    ("connection", "close"),
                ],
                Json(json!({"error": {"message": "Rate limit reached for requests", "type": "requests",
                    "param": null, "code": "rate_limit_exceeded"}})),
            )
                .into_response(),
        ),
        "redirect" => Some((StatusCode::TEMPORARY_REDIRECT, [("location", "/v1/completions")], "").into_response()),
        _ => None,
    }
}

/// A chat stream's events for `model`: the role, the content in pieces, the stop, `[DONE]`.
fn stream_events(model: &str, content: &str) -> Vec<String> {
    let mut events = Vec::new();
    events.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
    ));
    match model {
        "leak" | "leak-multiline" => {
            // The key split over three events, seven characters at a time.
            let event = if model == "leak" { delta } else { delta_multiline };
            let mut rest = content;
            while !rest.is_empty() {
                let cut = rest.len().min(7);
                events.push(event(&rest[..cut]));
                rest = &rest[cut..];
            }
        }
        "long-stream" => events.extend((0..60).map(|i| delta(&format!("second {i}. ")))),
        _ => events.extend((0..3).map(|i| {
            delta(&format!("part{i}: the quick brown fox jumps over the lazy dog, then naps in the warm sun. "))
        })),
    }
    events.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    events.push("data: [DONE]\n\n".to_owned());
    events
}

async fn chat(recorder: Recorder, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    record(&recorder, headers, body);
    let stream = request["stream"] == true;
    let with_usage = request["stream_options"]["include_usage"] == true;
    let model = request["model"].as_str().unwrap_or_default();
    if model == "slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(failure) = failure(model) {
        return failure;
    }
    let content = if model.starts_with("leak") {
        format!(
            "Sure, here is what you asked for, after checking the vault twice. The deploy key is {LEAKED_KEY}, keep it safe."
        )
    } else {
        "Hello!".to_owned()
    };
    if !stream {
        return (
            [("x-request-id", "req_upstream_1"), ("openai-processing-ms", "12"), ("x-internal-host", "gpu-7")],
            Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": usage()})),
        )
            .into_response();
    }
    let mut events = stream_events(model, &content);
    if with_usage {
        let done = events.pop().expect("[DONE]");
        for event in &mut events {
            let chunk = event.strip_prefix("data: ").and_then(|rest| serde_json::from_str::<Value>(rest.trim()).ok());
            if let Some(mut chunk) = chunk {
                chunk["usage"] = Value::Null;
                *event = format!("data: {chunk}\n\n");
            }
        }
        let last = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage()});
        events.push(format!("data: {last}\n\n"));
        events.push(done);
    }
    let every = match model {
        "long-stream" => Duration::from_secs(1),
        "leak" | "leak-multiline" => Duration::from_millis(20),
        _ => Duration::from_millis(100),
    };
    sse(events, every)
}

/// Records the request and answers `answer`.
pub(crate) async fn other(recorder: Recorder, headers: HeaderMap, body: Bytes, answer: Value) -> Json<Value> {
    record(&recorder, headers, body);
    Json(answer)
}

/// Starts the upstream on a free loopback port: its base URL and what it saw.
pub(crate) async fn start() -> (String, Recorder) {
    let seen: Recorder = Arc::default();
    let (a, b, c, d) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    let (e, f) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route("/v1/messages", post(move |h: HeaderMap, body: Bytes| super::messages::messages(e.clone(), h, body)))
        .route(
            "/v1/messages/count_tokens",
            post(move |h: HeaderMap, body: Bytes| super::messages::count_tokens(f.clone(), h, body)),
        )
        .route("/v1/chat/completions", post(move |h: HeaderMap, body: Bytes| chat(a.clone(), h, body)))
        .route(
            "/v1/responses",
            post(move |h: HeaderMap, body: Bytes| {
                other(b.clone(), h, body, json!({"id": "resp_1", "object": "response", "status": "completed",
                    "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hi from responses"}]}]}))
            }),
        )
        .route(
            "/v1/completions",
            post(move |h: HeaderMap, body: Bytes| {
                other(c.clone(), h, body, json!({"id": "cmpl-1", "object": "text_completion",
                    "choices": [{"index": 0, "text": "completed text", "finish_reason": "stop"}]}))
            }),
        )
        .route(
            "/v1/embeddings",
            post(move |h: HeaderMap, body: Bytes| {
                other(d.clone(), h, body, json!({"object": "list", "model": "emb",
                    "data": [{"object": "embedding", "index": 0, "embedding": "AAAAAAAAgD8AAIA/AACAPwAAgD8AAIA/AACAPw=="}]}))
            }),
        )
        .route(
            "/v1/models",
            get(|| async {
                Json(json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}, {"id": "leak", "object": "model"}]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}
