//! The engine's tracing span, in a test binary of its own: a subscriber installed for one
//! thread must not race other tests over the callsites' cached interest.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;

use common::{Captured, SMALL};

/// Every log line of a request can be found by its id when the guard logs at `debug`:
/// the engine's span carries the request id, the tier and the decision, and never the
/// user id or the prompt. At the default `info` the span is disabled, so a request does
/// not pay for formatting it.
#[tokio::test]
async fn each_request_runs_in_a_span_with_its_id_tier_and_decision() {
    let config = godel_guard::config::parse(SMALL).expect("config");
    let built = godel_guard::server::build(&config, false, 1, Box::new(Captured::default())).await.expect("builds");
    let router = godel_guard::http::router(built.state, godel_guard::http::BodyLimits::new(built.body_limit));
    let inspect = |level: &str| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(move || writer.clone())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .finish();
        let router = router.clone();
        async move {
            let _default = tracing::subscriber::set_default(subscriber);
            let body = json!({"user_id": "span-user-77", "tier": "premium", "prompt": "a secret plan"}).to_string();
            let request =
                Request::post("/v1/inspect").header("content-type", "application/json").body(Body::from(body));
            let response = router.oneshot(request.expect("a request")).await.expect("the router answers");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("a body");
            let answer: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
            assert_eq!(status, StatusCode::OK, "{answer}");
            let closed: Vec<Value> = logs
                .text()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("a JSON log line"))
                .filter(|l| l["span"]["name"] == "inspect")
                .collect();
            (answer["request_id"].as_str().expect("an id").to_owned(), closed, logs.text())
        }
    };

    let (_, closed, text) = inspect("info").await;
    assert!(closed.is_empty(), "no request span at info: {text}");

    let (request_id, closed, text) = inspect("debug").await;
    assert_eq!(closed.len(), 1, "one span per request: {text}");
    let span = &closed[0]["span"];
    assert_eq!(
        (span["request_id"].as_str(), span["tier"].as_str()),
        (Some(request_id.as_str()), Some("premium")),
        "{span}"
    );
    assert_eq!(span["decision"], "allow", "{span}");
    assert!(!text.contains("span-user-77") && !text.contains("secret plan"), "{text}");
}
