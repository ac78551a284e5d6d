//! The Redis token bucket against real `redis-server` processes: bucket semantics,
//! expiry, tiers, debt, NOSCRIPT recovery, Cluster, and the failure modes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer, Sentinel};
use godel_config::{FailureMode, RedisConfig, RedisMode};
use godel_guard::limiter::{
    BucketLimit, DebtPolicy, FailoverLimiter, Limiter, RedisBackend, Throttle, Usage, UsageLimit, bucket_key,
};
use godel_guard::metrics::Metrics;

const DEBT: DebtPolicy = DebtPolicy { half_life_seconds: 600.0, quarantine_threshold: 200.0 };

fn config(url: String, mode: RedisMode) -> RedisConfig {
    RedisConfig {
        url,
        mode,
        nodes: vec![],
        master_name: None,
        timeout_ms: 200,
        lease_ms: 1000,
        username_file: None,
        password_file: None,
        tls: None,
    }
}

async fn backend(redis: &RedisServer) -> RedisBackend {
    let backend = RedisBackend::new(&config(redis.url(), RedisMode::Standalone)).unwrap();
    backend.connect().await.unwrap();
    backend
}

async fn take(backend: &RedisBackend, bucket: &str, limit: BucketLimit, n: usize) -> Vec<bool> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(backend.admit(bucket, limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed());
    }
    out
}

#[tokio::test]
async fn burst_is_allowed_then_refused_then_refilled() {
    let redis = RedisServer::start();
    let b = backend(&redis).await;
    let limit = BucketLimit { rate_per_second: 10.0, burst: 5.0 };
    assert_eq!(take(&b, "free:u1", limit, 6).await, [true, true, true, true, true, false]);
    let refused = b.admit("free:u1", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
    assert!(!refused.allowed() && refused.retry_after_ms > 0 && refused.retry_after_ms <= 100, "{refused:?}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let refilled = take(&b, "free:u1", limit, 6).await.iter().filter(|a| **a).count();
    assert!((3..=4).contains(&refilled), "10/s for 0.35 s refills 3 tokens, got {refilled}");
}

#[tokio::test]
async fn keys_are_hash_tagged_and_expire_when_idle() {
    let redis = RedisServer::start();
    let b = backend(&redis).await;
    let limit = BucketLimit { rate_per_second: 100.0, burst: 5.0 };
    b.admit("free:abc123", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
    assert_eq!(bucket_key("free:abc123"), "godel:rl:{free:abc123}");
    assert_eq!(redis.cli(&["EXISTS", "godel:rl:{free:abc123}"]), "1");
    let ttl: i64 = redis.cli(&["PTTL", "godel:rl:{free:abc123}"]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 1100, "refill takes 10 ms plus a second of margin, got {ttl}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(redis.cli(&["EXISTS", "godel:rl:{free:abc123}"]), "0", "idle bucket expired");
}

#[tokio::test]
async fn tiers_and_users_are_independent() {
    let redis = RedisServer::start();
    let b = backend(&redis).await;
    let limit = BucketLimit { rate_per_second: 0.01, burst: 2.0 };
    assert_eq!(take(&b, "free:u", limit, 3).await, [true, true, false]);
    assert_eq!(take(&b, "premium:u", limit, 3).await, [true, true, false]);
    assert_eq!(take(&b, "free:v", limit, 1).await, [true]);
}

#[tokio::test]
async fn debt_quarantines_and_survives_beside_the_bucket() {
    let redis = RedisServer::start();
    let b = backend(&redis).await;
    let limit = BucketLimit { rate_per_second: 100.0, burst: 100.0 };
    assert!(b.admit("free:bad", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed());
    b.add_debt("free:bad", 150.0, DEBT).await.unwrap();
    assert!(
        b.admit("free:bad", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed(),
        "150 is under the 200 threshold"
    );
    b.add_debt("free:bad", 100.0, DEBT).await.unwrap();
    let a = b.admit("free:bad", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
    assert_eq!(a.refused, Some(Throttle::Quarantined), "{a:?}");
    // 250 decays to 200 after log2(1.25) half-lives of 600 s: about 193 s.
    assert!((190_000..=196_000).contains(&a.retry_after_ms), "{a:?}");
    let ttl: i64 = redis.cli(&["PTTL", "godel:rl:{free:bad}"]).parse().unwrap();
    assert!(ttl > 600_000, "debt keeps the key alive while it decays: {ttl}");
}

#[tokio::test]
async fn script_flush_mid_run_is_recovered_and_counts_stay_right() {
    let redis = RedisServer::start();
    let b = backend(&redis).await;
    let limit = BucketLimit { rate_per_second: 0.01, burst: 10.0 };
    assert_eq!(take(&b, "free:f", limit, 4).await, [true; 4]);
    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]), "OK");
    let rest = take(&b, "free:f", limit, 8).await;
    assert_eq!(rest, [true, true, true, true, true, true, false, false], "the bucket kept its 6 tokens");
}

#[tokio::test]
async fn cluster_of_three_masters_holds_limits_for_users_across_slots() {
    let cluster = RedisCluster::start(3);
    let mut cfg = config(cluster.nodes[0].url(), RedisMode::Cluster);
    cfg.nodes = cluster.nodes[1..].iter().map(RedisServer::url).collect();
    let b = RedisBackend::new(&cfg).unwrap();
    b.connect().await.unwrap();
    let limit = BucketLimit { rate_per_second: 0.01, burst: 3.0 };
    for user in 0..150 {
        let allowed = take(&b, &format!("free:user-{user}"), limit, 5).await;
        assert_eq!(allowed, [true, true, true, false, false], "user {user}");
    }
    let per_node: Vec<u64> = cluster.nodes.iter().map(|n| n.cli(&["DBSIZE"]).parse().unwrap()).collect();
    assert_eq!(per_node.iter().sum::<u64>(), 150, "{per_node:?}");
    assert!(per_node.iter().all(|&n| n > 10), "users spread over every master: {per_node:?}");
}

async fn failover(redis: &RedisServer, mode: FailureMode) -> (Arc<FailoverLimiter>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let mut cfg = config(redis.url(), RedisMode::Standalone);
    cfg.timeout_ms = 50;
    let limiter = FailoverLimiter::start(&cfg, mode, 2, metrics.clone()).await.unwrap();
    (limiter, metrics)
}

/// How many times Redis ran `command` since its statistics were last reset.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

fn gauge(metrics: &Metrics, name: &str) -> String {
    let text = metrics.encode().unwrap();
    text.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn local_failure_mode_falls_back_with_divided_limits_and_returns_to_redis() {
    let mut redis = RedisServer::start();
    let (limiter, metrics) = failover(&redis, FailureMode::Local).await;
    let limit = BucketLimit { rate_per_second: 0.01, burst: 10.0 };
    let admit = || limiter.admit("free:x", limit, UsageLimit::NONE, Usage::ZERO, DEBT);
    assert!(admit().await.unwrap().allowed());
    assert_eq!(redis.cli(&["EXISTS", "godel:rl:{free:x}"]), "1", "decided on Redis");

    redis.kill();
    let started = Instant::now();
    let mut allowed = 0;
    for _ in 0..20 {
        let a = admit().await.expect("the failure mode answers, never an error");
        allowed += usize::from(a.allowed());
    }
    assert_eq!(allowed, 5, "two replicas share the burst of 10: 5 each in the fallback");
    assert!(started.elapsed() < Duration::from_secs(2), "the breaker spares most calls the timeout");
    assert_eq!(gauge(&metrics, "godel_ratelimit_fallback_active"), "godel_ratelimit_fallback_active 1");
    assert!(!gauge(&metrics, "godel_ratelimit_backend_errors_total").ends_with(" 0"));
    assert!(limiter.readiness().is_ok(), "the local fallback can still decide");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge(&metrics, "godel_ratelimit_fallback_active").ends_with(" 1") {
        assert!(Instant::now() < deadline, "did not return to Redis within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admit().await.unwrap().allowed());
    assert_eq!(redis.cli(&["EXISTS", "godel:rl:{free:x}"]), "1", "back on Redis");
}

#[tokio::test]
async fn breaker_spares_requests_the_timeout_of_a_hung_redis() {
    let redis = RedisServer::start();
    let (limiter, _) = failover(&redis, FailureMode::Local).await;
    let limit = BucketLimit { rate_per_second: 100.0, burst: 100.0 };
    assert!(limiter.admit("free:h", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed());
    redis.pause();
    let mut slow = 0;
    for _ in 0..30 {
        let started = Instant::now();
        assert!(limiter.admit("free:h", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed());
        if started.elapsed() >= Duration::from_millis(40) {
            slow += 1;
        }
    }
    redis.resume();
    assert_eq!(slow, 3, "only the calls that trip the breaker wait for the 50 ms timeout");
}

#[tokio::test]
async fn open_and_closed_failure_modes() {
    for (mode, expect_allowed) in [(FailureMode::Open, true), (FailureMode::Closed, false)] {
        let mut redis = RedisServer::start();
        let (limiter, _) = failover(&redis, mode).await;
        redis.kill();
        let limit = BucketLimit { rate_per_second: 0.01, burst: 1.0 };
        for _ in 0..10 {
            let a = limiter.admit("free:y", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
            assert_eq!(a.allowed(), expect_allowed, "{mode:?}");
        }
        assert_eq!(limiter.readiness().is_ok(), expect_allowed, "closed mode with Redis down is unready");
    }
}

#[tokio::test]
async fn redis_down_at_start_up_starts_on_the_failure_mode() {
    let mut redis = RedisServer::start();
    redis.kill();
    let (limiter, metrics) = failover(&redis, FailureMode::Local).await;
    assert_eq!(gauge(&metrics, "godel_ratelimit_fallback_active"), "godel_ratelimit_fallback_active 1");
    let limit = BucketLimit { rate_per_second: 0.01, burst: 4.0 };
    assert!(limiter.admit("free:z", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap().allowed());
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cli(&["EXISTS", "godel:rl:{free:z}"]) != "1" {
        assert!(Instant::now() < deadline, "never reached Redis after it came up");
        limiter.admit("free:z", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_mode_follows_a_failover_and_reloads_the_script() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_with(&[]);
    assert_eq!(replica.cli(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]), "OK");
    let sentinel = Sentinel::start(&master);
    let cfg = RedisConfig {
        url: format!("redis://127.0.0.1:{}", sentinel.port),
        mode: RedisMode::Sentinel,
        nodes: vec![],
        master_name: Some("mymaster".into()),
        timeout_ms: 500,
        lease_ms: 1000,
        username_file: None,
        password_file: None,
        tls: None,
    };
    let b = RedisBackend::new(&cfg).unwrap();
    b.connect().await.unwrap();
    let limit = BucketLimit { rate_per_second: 0.01, burst: 5.0 };
    assert_eq!(take(&b, "free:s", limit, 2).await, [true, true]);
    assert_eq!(master.cli(&["EXISTS", "godel:rl:{free:s}"]), "1", "written on the master Sentinel named");
    // Let the replica catch up, then lose the master.
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.cli(&["EXISTS", "godel:rl:{free:s}"]) != "1" {
        assert!(Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    master.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sentinel.master_port() != replica.port {
        assert!(Instant::now() < deadline, "sentinel did not fail over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The promoted replica never loaded the script (Redis does not replicate SCRIPT LOAD):
    // the backend re-resolves the master and reloads the script after NOSCRIPT.
    let deadline = Instant::now() + Duration::from_secs(10);
    let admission = loop {
        match b.admit("free:s", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await {
            Ok(a) => break a,
            Err(_) => {
                assert!(Instant::now() < deadline, "never reached the new master");
                let _ = b.connect().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(admission.allowed());
    assert_eq!(admission.remaining, 2, "the bucket survived the failover: 5 - 2 - 1");
}

/// The token meters live in the user's bucket hash and are decided in the same script
/// call: an admission is still one EVALSHA, whatever limits the tier sets.
#[tokio::test]
async fn token_meters_share_the_buckets_key_and_its_one_script_call() {
    let redis = RedisServer::start();
    let b = backend(&redis).await;
    let limit = BucketLimit { rate_per_second: 100.0, burst: 100.0 };
    let usage =
        UsageLimit { tokens_per_minute: Some(1000.0), tokens_per_day: Some(50_000.0), spend_per_day: Some(1.0) };
    let ask = |tokens: f64| b.admit("free:meter", limit, usage, Usage { tokens, spend: tokens / 1e4 }, DEBT);
    ask(1.0).await.unwrap(); // loads the script
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let mut admitted = Vec::new();
    for _ in 0..5 {
        admitted.push(ask(300.0).await.unwrap().refused);
    }
    let expected = [None, None, None, None, Some(Throttle::TokenLimited)];
    assert_eq!(admitted, expected, "at 901 of 1000 a fourth is admitted; at 1201 a fifth is not");
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "eval")), (5, 0));
    let fields = redis.cli(&["HKEYS", "godel:rl:{free:meter}"]);
    for field in ["tokens", "tpm", "tpd", "spd"] {
        assert!(fields.lines().any(|f| f == field), "{field} in {fields}");
    }
    let ttl: i64 = redis.cli(&["PTTL", "godel:rl:{free:meter}"]).parse().unwrap();
    assert!(ttl > 60_000, "kept while the day's meter drains: {ttl} ms");

    // Settling to a lower count gives the difference back; the budget meter refuses
    // on its own once spent.
    b.settle("free:meter", usage, Usage { tokens: -600.0, spend: 0.0 }).await.unwrap();
    assert_eq!(ask(1.0).await.unwrap().refused, None, "about 600 of 1000 after settling");
    let spent = b.admit("free:meter", limit, usage, Usage { tokens: 0.0, spend: 5.0 }, DEBT).await.unwrap();
    assert_eq!(spent.refused, None, "under budget when asked");
    let over = ask(0.0).await.unwrap();
    assert_eq!(over.refused, Some(Throttle::OverBudget));
    assert!(over.retry_after_ms > 3_600_000, "a day's budget drains over the day: {}", over.retry_after_ms);
}

/// Leases: a busy user's requests are decided by the pod holding their lease, one script
/// call per lease, and the lease grows while the user outpaces it.
#[tokio::test]
async fn a_busy_users_requests_take_one_script_call_per_lease() {
    let redis = RedisServer::start();
    let (limiter, metrics) = failover(&redis, FailureMode::Local).await;
    let limit = BucketLimit { rate_per_second: 1000.0, burst: 1000.0 };
    limiter.admit("free:other", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap(); // loads the script
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let mut remaining = Vec::new();
    for _ in 0..200 {
        let a = limiter.admit("free:busy", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
        assert!(a.allowed(), "{a:?}");
        remaining.push(a.remaining);
    }
    // Leases of 0, 1, 2, 4, ... 64, 64: 200 requests in 9 calls.
    let scripts = calls(&redis, "evalsha") + calls(&redis, "eval");
    assert_eq!(scripts, 9, "script calls for 200 requests");
    assert_eq!(
        gauge(&metrics, "godel_ratelimit_leased_total"),
        format!("godel_ratelimit_leased_total {}", 200 - scripts)
    );
    // A lease's requests are still the user's: no answer drops by more than the one
    // request it admitted (the refill between calls may add some).
    assert!(remaining.windows(2).all(|w| w[0] <= w[1] + 1), "leased requests count as left: {remaining:?}");
    let tokens: f64 = redis.cli(&["HGET", "godel:rl:{free:busy}", "tokens"]).parse().unwrap();
    assert!(tokens <= 1000.0 - 200.0 + 10.0, "every leased request left the shared bucket: {tokens}");
}

/// Requests of one user at once take one call between them: the first asks Redis for
/// a lease, the others wait for its answer and take from it (without that, each would
/// call and ask for twice the last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_one_user_at_once_share_one_lease_call() {
    let redis = RedisServer::start();
    let (limiter, metrics) = failover(&redis, FailureMode::Local).await;
    let limit = BucketLimit { rate_per_second: 1000.0, burst: 1000.0 };
    let admit = || limiter.admit("free:agent", limit, UsageLimit::NONE, Usage::ZERO, DEBT);
    // Leases of 0, 1, 2 and 4, each used up: the next call will ask for 8.
    for _ in 0..11 {
        assert!(admit().await.unwrap().allowed());
    }
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let leased_before = gauge(&metrics, "godel_ratelimit_leased_total");
    let answers = futures::future::join_all((0..8).map(|_| admit())).await;
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|a| a.allowed())), "{answers:?}");
    let scripts = calls(&redis, "evalsha") + calls(&redis, "eval");
    assert_eq!(scripts, 1, "eight requests at once, one call");
    assert_ne!(gauge(&metrics, "godel_ratelimit_leased_total"), leased_before, "the others came from its lease");
}

/// Two pods leasing from one user's bucket at once still grant one limit: a lease is
/// taken from the shared tokens, so what both admit never passes what the bucket held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leasing_pods_hold_one_limit() {
    let redis = RedisServer::start();
    let pods = [failover(&redis, FailureMode::Local).await.0, failover(&redis, FailureMode::Local).await.0];
    let limit = BucketLimit { rate_per_second: 200.0, burst: 100.0 };
    let started = Instant::now();
    let tasks: Vec<_> = pods
        .iter()
        .flat_map(|pod| [pod.clone(), pod.clone()])
        .map(|pod| {
            tokio::spawn(async move {
                let mut allowed = 0u32;
                while started.elapsed() < Duration::from_secs(1) {
                    let a = pod.admit("free:shared", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
                    allowed += u32::from(a.allowed());
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 100.0 + 200.0 * elapsed + 1.0;
    assert!(f64::from(allowed) <= bound, "allowed {allowed}, bound {bound:.0} over {elapsed:.2} s");
    assert!(f64::from(allowed) >= 100.0 + 200.0 * (elapsed - 0.5), "the limit is reached, not starved: {allowed}");
}

/// Debt found by a leasing pod reaches Redis with the user's next call, with the flusher
/// when no call comes, and at once when it takes the user past half the threshold; the
/// lease is then dropped, so a quarantine is decided by Redis at the next request.
#[tokio::test]
async fn leased_debt_reaches_redis_and_quarantines() {
    let redis = RedisServer::start();
    let metrics = Arc::new(Metrics::new());
    let mut cfg = config(redis.url(), RedisMode::Standalone);
    cfg.lease_ms = 300;
    let limiter = FailoverLimiter::start(&cfg, FailureMode::Local, 1, metrics).await.unwrap();
    let limit = BucketLimit { rate_per_second: 1000.0, burst: 1000.0 };
    let debt_in_redis = || -> f64 { redis.cli(&["HGET", "godel:rl:{free:d}", "debt"]).parse().unwrap_or(0.0) };
    let admit = || limiter.admit("free:d", limit, UsageLimit::NONE, Usage::ZERO, DEBT);
    for _ in 0..10 {
        assert!(admit().await.unwrap().allowed());
    }
    limiter.add_debt("free:d", 20.0, DEBT).await.unwrap();
    assert_eq!(debt_in_redis(), 0.0, "20 is far under half of 200: it waits");
    let deadline = Instant::now() + Duration::from_secs(3);
    while debt_in_redis() < 19.0 {
        assert!(Instant::now() < deadline, "pending debt never reached Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    limiter.add_debt("free:d", 90.0, DEBT).await.unwrap();
    assert!(debt_in_redis() > 100.0, "past half the threshold it is sent at once: {}", debt_in_redis());
    limiter.add_debt("free:d", 100.0, DEBT).await.unwrap();
    let a = admit().await.unwrap();
    assert_eq!(a.refused, Some(Throttle::Quarantined), "the lease was dropped: Redis decides, {a:?}");
}

/// A guard that stops sends the debt it still holds.
#[tokio::test]
async fn flush_sends_pending_debt() {
    let redis = RedisServer::start();
    let (limiter, _) = failover(&redis, FailureMode::Local).await;
    let limit = BucketLimit { rate_per_second: 1000.0, burst: 1000.0 };
    limiter.admit("free:f", limit, UsageLimit::NONE, Usage::ZERO, DEBT).await.unwrap();
    limiter.add_debt("free:f", 5.0, DEBT).await.unwrap();
    assert_eq!(redis.cli(&["HGET", "godel:rl:{free:f}", "debt"]), "0");
    limiter.flush().await.unwrap();
    let debt: f64 = redis.cli(&["HGET", "godel:rl:{free:f}", "debt"]).parse().unwrap();
    assert!((4.9..=5.0).contains(&debt), "{debt}");
}
