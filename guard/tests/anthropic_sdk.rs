//! The proxy's Anthropic Messages API as the real `anthropic` Python SDK sees it: normal
//! and streamed answers, a block (also of an injection in a tool result), a throttle
//! raised as the SDK's own exception and retried after `Retry-After`, an answer carrying
//! a key redacted whole and split across `content_block_delta`s, an upstream 500 without
//! its internals, `count_tokens` passed through. The checks are in
//! `tests/sdk/anthropic_client.py`; `scripts/setup.sh` installs the SDK.

mod common;

use common::Guard;
use common::upstream::USAGE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_against_the_guard() {
    let (url, seen) = common::upstream::start().await;
    let policy = format!(
        "tiers: [{{name: pro, ratePerSecond: 100, burst: 100, tokensPerMinute: 100000}}, \
         {{name: slow, ratePerSecond: 1, burst: 1}}]\n\
         defaultTier: pro\nproxy: {{upstream: \"{url}\"}}\n"
    );
    let guard = Guard::start(&policy, &[]);
    common::sdk::run("anthropic_client.py", "anthropic", guard.url(""), 10).await;

    // What reached the upstream: the SDK's credential (this version sends it as a bearer
    // token, older ones as `x-api-key`) and version header, not the guard's tier header.
    let seen = seen.lock().unwrap();
    let first = &seen.headers[0];
    let credential = ["x-api-key", "authorization"].iter().find_map(|h| first.get(*h)).map(|v| v.to_str().unwrap());
    assert!(credential.is_some_and(|v| v.ends_with("sk-ant-upstream-credential")), "{first:?}");
    assert!(first.contains_key("anthropic-version"), "{first:?}");
    assert!(!first.contains_key("x-godel-tier"));
    assert_eq!(seen.json(0)["metadata"]["user_id"], "ant-normal", "the body passes as sent");
    drop(seen);

    // Each metered answer, whole or streamed, was settled to the upstream's usage (a
    // stream's from `message_start`'s input and `message_delta`'s output): the four
    // answered `pro` requests (normal, stream, and the two with a key).
    let lines = guard.wait_audit(12);
    let settled: Vec<_> = lines.iter().filter(|l| l["direction"] == "answer").map(|l| l["tokens"].clone()).collect();
    assert_eq!(settled, vec![serde_json::json!(USAGE.0 + USAGE.1); 4], "{lines:?}");
}
