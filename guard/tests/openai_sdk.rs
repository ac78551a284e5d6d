//! The proxy as the real `openai` Python SDK sees it: normal and streamed answers, a
//! block, a throttle and a stream over the cap raised as the SDK's own exceptions (its
//! retry honouring `Retry-After`), a tool call carrying a secret, an answer carrying one (redacted in a
//! stream split across chunks), upstream 500, 429 and timeout. The checks are in
//! `tests/sdk/openai_client.py`; `scripts/test.sh` installs the SDK.

mod common;

use common::Guard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_against_the_guard() {
    let (url, _) = common::upstream::start().await;
    let policy = format!(
        "tiers: [{{name: pro, ratePerSecond: 100, burst: 100}}, {{name: slow, ratePerSecond: 1, burst: 1}},\
         {{name: streams, ratePerSecond: 100, burst: 100, maxStreams: 1}},\
         {{name: tokens, ratePerSecond: 100, burst: 100, tokensPerMinute: 64}}]\n\
         defaultTier: pro\nproxy: {{upstream: \"{url}\", timeoutSeconds: 1}}\n"
    );
    let guard = Guard::start(&policy, &[]);
    common::sdk::run("openai_client.py", "openai", guard.url(""), 15).await;
}
