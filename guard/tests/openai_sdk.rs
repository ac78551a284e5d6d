//! The proxy as the real `openai` Python SDK sees it: normal and streamed answers, a
//! block, a throttle and a stream over the cap raised as the SDK's own exceptions (its
//! retry honouring `Retry-After`), a tool call carrying a secret, an answer carrying one (redacted in a
//! stream split across chunks), upstream 500, 429 and timeout. The checks are in
//! `tests/sdk/openai_client.py`; `scripts/test.sh` installs the SDK.

mod common;

use std::process::Command;

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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_client.py");
    let base = guard.url("");
    let out = tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg(base).output())
        .await
        .unwrap()
        .expect("python3 runs (scripts/test.sh installs it and the openai package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(!stderr.contains("No module named 'openai'"), "the openai package is missing: scripts/test.sh installs it");
    assert!(out.status.success(), "SDK checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("15 of 15 checks passed"), "{stdout}");
}
