//! Traces through the guard, end to end: an application's request with a W3C
//! `traceparent` goes through the real `godel-guard` binary to a local upstream, and a
//! real Jaeger (built from its Go module, OTLP/HTTP receiver and query API on loopback)
//! holds the guard's spans under the application's trace id, with the upstream's request
//! naming the guard's upstream span as its parent.

use std::time::Duration;

use godel_tests::jaeger::{Jaeger, tags};
use serde_json::{Value, json};

mod common;

use common::{Guard, upstream};

/// The application's trace and span (the span the guard's server span hangs under).
const APP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const APP_SPAN: &str = "00f067aa0ba902b7";
const BLOCKED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const USER: &str = "trace-user-5150";
const PROMPT: &str = "Say hello to the lighthouse keeper";

/// The one span named `name`, failing with every span's name if there is not exactly one.
fn one<'s>(spans: &'s [Value], name: &str) -> &'s Value {
    let found: Vec<&Value> = spans.iter().filter(|s| s["operationName"] == name).collect();
    let names: Vec<&Value> = spans.iter().map(|s| &s["operationName"]).collect();
    assert_eq!(found.len(), 1, "one `{name}` span among {names:?}");
    found[0]
}

/// The span id `span`'s CHILD_OF reference names.
fn parent(span: &Value) -> &str {
    span["references"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["refType"] == "CHILD_OF"))
        .and_then(|r| r["spanID"].as_str())
        .unwrap_or_else(|| panic!("no parent: {span}"))
}

async fn chat(guard: &Guard, traceparent: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(guard.url("/v1/chat/completions"))
        .header("x-godel-user", USER)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent).header("tracestate", "app=opaque");
    }
    request.send().await.expect("the guard answers")
}

/// The acceptance test of the issue: one proxied request from an application span shows
/// up in Jaeger as the guard's server span under the application's span, with the
/// guardrail, limiter, traps and upstream spans below it, and the upstream received the
/// same trace id with the guard's upstream span as parent. A blocked prompt's trace names
/// the rule; no span carries the user id, the prompt or the key. With a sampling ratio of
/// 0 the guard still records the application's sampled traces (parent-based), and a
/// request that comes without a trace gets an unsampled one that Jaeger never sees.
#[tokio::test]
async fn the_guards_spans_join_the_applications_trace_and_reach_jaeger() {
    let jaeger = Jaeger::start();
    let (upstream_url, seen) = upstream::start().await;
    let config = format!(
        "proxy: {{upstream: '{upstream_url}'}}\ntelemetry: {{otlpEndpoint: '{}', samplingRatio: 0}}\n",
        jaeger.otlp
    );
    let mut guard = Guard::start(&config, &[]);

    let answer = chat(&guard, Some(&format!("00-{APP_TRACE}-{APP_SPAN}-01"))).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap_or_default());
    let key = format!("my key is {}", upstream::LEAKED_KEY);
    let blocked = reqwest::Client::new()
        .post(guard.url("/v1/inspect"))
        .header("traceparent", format!("00-{BLOCKED_TRACE}-{APP_SPAN}-01"))
        .json(&json!({"user_id": USER, "prompt": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 200);
    assert_eq!(blocked.json::<Value>().await.unwrap()["decision"], "block");
    let untraced = chat(&guard, None).await;
    assert_eq!(untraced.status(), 200);

    // The guard exports what it buffered as it stops.
    guard.sigterm();
    assert!(guard.wait_exit(Duration::from_secs(20)).success(), "{:#?}", guard.stderr.lock().unwrap());

    let spans = jaeger.wait_spans(APP_TRACE, 5);
    let server = one(&spans, "POST /v1/chat/completions");
    let inspect = one(&spans, "inspect");
    let (limiter, traps, call) = (one(&spans, "limiter"), one(&spans, "traps"), one(&spans, "chat"));
    assert!(spans.iter().all(|s| s["traceID"] == APP_TRACE), "{spans:#?}");
    assert_eq!(parent(server), APP_SPAN, "the server span continues the application's span");
    assert_eq!(parent(inspect), server["spanID"].as_str().unwrap());
    assert_eq!(parent(call), server["spanID"].as_str().unwrap());
    for child in [limiter, traps] {
        assert_eq!(parent(child), inspect["spanID"].as_str().unwrap(), "{child}");
    }
    let server_tags = tags(server);
    assert_eq!(server_tags["span.kind"], "server");
    assert_eq!(server_tags["http.route"], "/v1/chat/completions");
    assert_eq!(server_tags["http.response.status_code"], "200");
    assert_eq!(tags(inspect)["decision"], "allow");
    assert_eq!(tags(traps)["findings"], "0");
    let call_tags = tags(call);
    assert_eq!(call_tags["span.kind"], "client");
    assert_eq!(call_tags["gen_ai.operation.name"], "chat");
    assert_eq!(call_tags["gen_ai.provider.name"], "openai");
    assert_eq!(call_tags["http.response.status_code"], "200");
    assert_eq!(call_tags["server.address"], "127.0.0.1");

    let (first, untraced_seen) = {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.headers.len(), 2, "both chats reached the upstream");
        let traceparent = |i: usize| seen.headers[i]["traceparent"].to_str().unwrap().to_owned();
        (traceparent(0), traceparent(1))
    };
    let own = format!("00-{APP_TRACE}-{}-01", call["spanID"].as_str().unwrap());
    assert_eq!(first, own, "the upstream's parent is the guard's upstream span");

    let blocked_spans = jaeger.wait_spans(BLOCKED_TRACE, 4);
    let blocked_traps = tags(one(&blocked_spans, "traps"));
    assert_eq!(blocked_traps["findings"], "1");
    assert_eq!(blocked_traps["rules"], "aws-access-key-id");
    assert_eq!(tags(one(&blocked_spans, "inspect"))["decision"], "block");
    assert_eq!(tags(one(&blocked_spans, "POST /v1/inspect"))["http.route"], "/v1/inspect");

    let exported = format!("{spans:?}{blocked_spans:?}");
    for secret in [USER, PROMPT, upstream::LEAKED_KEY] {
        assert!(!exported.contains(secret), "a span carries `{secret}`: {exported}");
    }

    // Sampling ratio 0: the guard's own root trace is not recorded, but still propagated.
    let parts: Vec<&str> = untraced_seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{untraced_seen}");
    assert_ne!(parts[1], APP_TRACE);
    assert_eq!(parts[3], "00", "an unsampled trace says so upstream: {untraced_seen}");
    assert!(jaeger.spans(parts[1]).is_empty(), "an unsampled trace reached Jaeger");
}
