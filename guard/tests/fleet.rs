//! Several real guard processes sharing one Redis: the split-brain fix, and what a
//! fleet does when Redis dies under load.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Guard;
use common::redis::RedisServer;
use serde_json::json;

const RATE: f64 = 20.0;
const BURST: f64 = 10.0;
/// The fleet is three guards, as the operator would tell each pod.
const FLEET: &[&str] = &["--fleet-size", "3"];

/// A fleet's policy. Every pod gets the same salt file, as a Secret mounted into each
/// pod would give them: with per-pod salts the same user would have a different
/// analytical id, and so a different bucket, on every pod.
/// The key and salt files go into `keys`, which the test keeps while its guards run.
fn policy(keys: &Path, backend: &str, redis: Option<&RedisServer>, failure_mode: &str) -> String {
    let key = common::write_key(keys, "key", 1);
    let salt = common::write_key(keys, "salt", 2);
    let redis = redis.map_or(String::new(), |r| format!("  redis: {{url: \"{}\", timeoutMs: 100}}\n", r.url()));
    format!(
        "tiers:\n  - {{name: free, ratePerSecond: {RATE}, burst: {BURST}}}\n\
         rateLimit:\n  backend: {backend}\n  failureMode: {failure_mode}\n{redis}\
         audit:\n  key: {{file: {{path: {}}}}}\n  salt: {{file: {{path: {}}}}}\n",
        key.display(),
        salt.display()
    )
}

struct Tally {
    allowed: usize,
    total: usize,
    server_errors: usize,
    elapsed: f64,
}

/// One user hammers every guard at once for `duration`.
async fn hammer(guards: &[Guard], user: &str, duration: Duration) -> Tally {
    hammer_with(guards, json!({"user_id": user, "prompt": "hello"}), duration).await
}

/// Every guard at once gets `body` for `duration`.
async fn hammer_with(guards: &[Guard], body: serde_json::Value, duration: Duration) -> Tally {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let tasks: Vec<_> = guards
        .iter()
        .flat_map(|g| std::iter::repeat_n(g.url("/v1/inspect"), 2))
        .map(|url| {
            let client = client.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let (mut allowed, mut total, mut errors) = (0, 0, 0);
                while started.elapsed() < duration {
                    let response = client.post(&url).json(&body).send().await.unwrap();
                    total += 1;
                    if response.status().is_server_error() {
                        errors += 1;
                        continue;
                    }
                    let body: serde_json::Value = response.json().await.unwrap();
                    allowed += usize::from(body["decision"] == "allow");
                }
                (allowed, total, errors)
            })
        })
        .collect();
    let mut tally = Tally { allowed: 0, total: 0, server_errors: 0, elapsed: 0.0 };
    for task in tasks {
        let (a, t, e) = task.await.unwrap();
        tally.allowed += a;
        tally.total += t;
        tally.server_errors += e;
    }
    tally.elapsed = started.elapsed().as_secs_f64();
    tally
}

fn bound(elapsed: f64) -> f64 {
    // The bucket's promise, plus one refill step of tolerance.
    BURST + RATE * elapsed + 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_guards_on_one_redis_hold_one_limit() {
    let keys = common::temp_dir("fleet-keys");
    let redis = RedisServer::start();
    let config = policy(&keys, "redis", Some(&redis), "local");
    let guards: Vec<Guard> = (0..3).map(|_| Guard::start(&config, FLEET)).collect();
    let tally = hammer(&guards, "split-brain-user", Duration::from_secs(3)).await;
    let limit = bound(tally.elapsed);
    assert_eq!(tally.server_errors, 0);
    assert!(tally.total > 3 * limit as usize, "the load must exceed the limit to test it: {}", tally.total);
    assert!(
        (tally.allowed as f64) <= limit,
        "allowed {} across three pods, bound {limit:.1} over {:.2} s",
        tally.allowed,
        tally.elapsed
    );
    assert!((tally.allowed as f64) >= BURST + RATE * (tally.elapsed - 0.5), "the limit is reached, not starved");
}

/// The token limit's split-brain test: requests are plenty (the bucket is far from
/// empty), tokens are not, and three pods still give the user one token limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_guards_on_one_redis_hold_one_token_limit() {
    const TPM: f64 = 3000.0;
    const EACH: f64 = 100.0;
    let keys = common::temp_dir("fleet-keys");
    let redis = RedisServer::start();
    let config = policy(&keys, "redis", Some(&redis), "local").replace(
        &format!("{{name: free, ratePerSecond: {RATE}, burst: {BURST}}}"),
        &format!("{{name: free, ratePerSecond: 1000, burst: 1000, tokensPerMinute: {TPM}}}"),
    );
    let guards: Vec<Guard> = (0..3).map(|_| Guard::start(&config, FLEET)).collect();
    let body = json!({"user_id": "token-user", "prompt": "hello", "tokens": EACH as u64});
    let tally = hammer_with(&guards, body, Duration::from_secs(3)).await;
    let charged = tally.allowed as f64 * EACH;
    // The cap, what drained meanwhile, and the one request a meter under its cap admits.
    let limit = TPM + TPM / 60.0 * tally.elapsed + EACH;
    println!("charged {charged} tokens across three pods; bound {limit:.0} over {:.2} s", tally.elapsed);
    assert_eq!(tally.server_errors, 0);
    assert!(tally.total as f64 > 2.0 * limit / EACH, "the load must exceed the limit: {}", tally.total);
    assert!(charged <= limit, "charged {charged}, bound {limit:.0}");
    assert!(charged >= TPM, "the limit is reached, not starved: {charged}");
    let refused: serde_json::Value = reqwest::Client::new()
        .post(guards[0].url("/v1/inspect"))
        .json(&json!({"user_id": "token-user", "prompt": "hello", "tokens": EACH as u64}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((refused["decision"].as_str(), refused["reason"].as_str()), (Some("throttle"), Some("token_limited")));
    assert!(refused["rate_limit"]["retry_after_ms"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_guards_with_in_memory_buckets_exceed_it() {
    let keys = common::temp_dir("fleet-keys");
    let config = policy(&keys, "local", None, "local");
    let guards: Vec<Guard> = (0..3).map(|_| Guard::start(&config, FLEET)).collect();
    let tally = hammer(&guards, "split-brain-user", Duration::from_secs(3)).await;
    let limit = bound(tally.elapsed);
    assert!(
        tally.allowed as f64 > 2.0 * limit,
        "each pod grants the whole limit, so three grant about three times it: {} vs {limit:.1}",
        tally.allowed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_then_restarted() {
    let keys = common::temp_dir("fleet-keys");
    let mut redis = RedisServer::start();
    let guard = Guard::start(&policy(&keys, "redis", Some(&redis), "local"), FLEET);
    let guards = std::slice::from_ref(&guard);
    let metrics = || async { reqwest::get(guard.url("/metrics")).await.unwrap().text().await.unwrap() };

    let before = hammer(guards, "fault-user-1", Duration::from_millis(500)).await;
    assert_eq!(before.server_errors, 0);
    redis.kill();
    let during = hammer(guards, "fault-user-2", Duration::from_secs(1)).await;
    assert_eq!(during.server_errors, 0, "the local failure mode never answers 5xx");
    assert!(during.allowed > 0, "the local fallback still allows");
    assert!(
        (during.allowed as f64) <= (BURST / 3.0).max(1.0) + RATE / 3.0 * during.elapsed + 1.0,
        "fallback limits are divided by the 3 replicas: {} allowed",
        during.allowed
    );
    assert!(metrics().await.contains("godel_ratelimit_fallback_active 1"));
    let health = reqwest::get(guard.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200, "local mode stays ready on its fallback");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics().await.contains("godel_ratelimit_fallback_active 0") {
        assert!(Instant::now() < deadline, "not back on Redis within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = hammer(guards, "fault-user-3", Duration::from_millis(500)).await;
    assert_eq!(after.server_errors, 0);
    assert!(redis.cli(&["DBSIZE"]) != "0", "decisions are on Redis again");
    let stderr = guard.stderr.lock().unwrap().join("\n");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("fault-user"), "no user id in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_failure_mode_throttles_and_turns_unready() {
    let keys = common::temp_dir("fleet-keys");
    let mut redis = RedisServer::start();
    let guard = Guard::start(&policy(&keys, "redis", Some(&redis), "closed"), FLEET);
    redis.kill();
    let tally = hammer(std::slice::from_ref(&guard), "closed-user", Duration::from_millis(800)).await;
    assert_eq!(tally.server_errors, 0);
    assert!(tally.allowed <= 1, "closed mode throttles once Redis is gone: {}", tally.allowed);
    let health = reqwest::get(guard.url("/health")).await.unwrap();
    assert_eq!(health.status(), 503);
    assert!(health.text().await.unwrap().contains("failureMode is closed"));
}

/// Redis killed, and frozen (SIGSTOP: connections open, nothing answers), under load, in
/// each failure mode: never a 5xx, and each mode does what it promises while Redis is
/// gone and after it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_or_frozen_under_load_in_every_failure_mode() {
    let keys = common::temp_dir("fleet-keys");
    for mode in ["local", "open", "closed"] {
        for frozen in [false, true] {
            let fault = if frozen { "frozen" } else { "killed" };
            let mut redis = RedisServer::start();
            let guard = Guard::start(&policy(&keys, "redis", Some(&redis), mode), FLEET);
            let guards = std::slice::from_ref(&guard);
            let before = hammer(guards, &format!("{mode}-{fault}-user-1"), Duration::from_millis(300)).await;
            assert_eq!(before.server_errors, 0, "{mode}/{fault}: before");
            if frozen {
                redis.pause();
            } else {
                redis.kill();
            }
            let during = hammer(guards, &format!("{mode}-{fault}-user-2"), Duration::from_secs(1)).await;
            assert_eq!(during.server_errors, 0, "{mode}/{fault}: no 5xx while Redis is gone");
            assert!(during.total > 10, "{mode}/{fault}: the guard kept answering: {} requests", during.total);
            match mode {
                "open" => assert_eq!(during.allowed, during.total, "open mode allows everything"),
                "closed" => assert!(during.allowed <= 1, "closed mode throttles: {} allowed", during.allowed),
                _ => assert!(
                    during.allowed > 0
                        && (during.allowed as f64) <= (BURST / 3.0).max(1.0) + RATE / 3.0 * during.elapsed + 1.0,
                    "local mode limits by a third: {} allowed",
                    during.allowed
                ),
            }
            if frozen {
                redis.resume();
                // Emptied, so that keys seen below are new decisions.
                redis.cli(&["FLUSHALL"]);
            } else {
                redis.restart();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let after = hammer(guards, &format!("{mode}-{fault}-user-3"), Duration::from_millis(300)).await;
                assert_eq!(after.server_errors, 0, "{mode}/{fault}: after");
                if redis.cli(&["DBSIZE"]) != "0" {
                    break;
                }
                assert!(Instant::now() < deadline, "{mode}/{fault}: decisions are not back on Redis");
            }
            let stderr = guard.stderr.lock().unwrap().join("\n");
            assert!(!stderr.contains("panicked") && !stderr.contains("-user-"), "{mode}/{fault}: {stderr}");
        }
    }
}

/// Stream leases live in Redis beside the buckets: a second guard sees the first one's
/// open stream, and a guard killed mid-stream leaks its slot only until the lease expires:
/// the upstream deadline (4 s here) plus five seconds, later than the stream itself could
/// have ended had its guard lived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_guards_stream_lease_expires() {
    let redis = RedisServer::start();
    let (upstream, _) = common::upstream::start().await;
    let keys = common::temp_dir("fleet-keys");
    let config = format!(
        "{}proxy: {{upstream: \"{upstream}\", timeoutSeconds: 4}}\n",
        policy(&keys, "redis", Some(&redis), "local")
            .replace(&format!("burst: {BURST}}}"), &format!("burst: {BURST}, maxStreams: 1}}"))
    );
    let stream = |guard: &Guard| {
        reqwest::Client::new()
            .post(guard.url("/v1/chat/completions"))
            .header("x-godel-user", "lease-user")
            .json(&json!({"model": "long-stream", "stream": true, "messages": [{"role": "user", "content": "count"}]}))
            .send()
    };
    let first = Guard::start(&config, FLEET);
    let held = stream(&first).await.unwrap();
    assert_eq!(held.status(), 200);
    let second = Guard::start(&config, FLEET);
    assert_eq!(stream(&second).await.unwrap().status(), 429, "the other guard's stream counts");
    let killed = Instant::now();
    drop(first); // SIGKILL: no lease given back
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = stream(&second).await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "the dead guard's lease never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let waited = killed.elapsed();
    assert!(waited >= Duration::from_secs(5), "freed after {waited:?}: before the lease could expire");
}
