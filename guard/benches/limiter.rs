//! Limiter decisions per second through the Rust Redis backend, against
//! `redis-benchmark` running EVALSHA of the same script in the same run.
//!
//! Run: `cargo bench -p godel-guard --bench limiter` (needs `redis-server` and
//! `redis-benchmark`, from Debian's redis-server and redis-tools). It starts its own
//! redis-server on a free loopback port. Results go to BENCHMARKS.md.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use godel_config::{RedisConfig, RedisMode};
use godel_guard::limiter::{BucketLimit, DebtPolicy, RedisBackend, Usage, UsageLimit};

const USERS: u64 = 10_000;
const LIMIT: BucketLimit = BucketLimit { rate_per_second: 1e6, burst: 1e6 };
const DEBT: DebtPolicy = DebtPolicy { half_life_seconds: 600.0, quarantine_threshold: 200.0 };

struct Run {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn redis_benchmark(port: u16, sha: &str, clients: usize, requests: usize) -> Run {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", &clients.to_string(), "-n", &requests.to_string()])
        .args(["-r", &USERS.to_string(), "--csv"])
        .args(["EVALSHA", sha, "1", "godel:rl:{free:__rand_int__}", "admit", "1000000", "1000000", "600", "200", "0"])
        .output()
        .expect("redis-benchmark (Debian package redis-tools)");
    let csv = String::from_utf8_lossy(&out.stdout);
    let row = csv.lines().last().expect("redis-benchmark output");
    let fields: Vec<f64> =
        row.split(',').skip(1).map(|f| f.trim_matches('"').parse().expect("numeric csv field")).collect();
    // "rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    Run { ops_per_sec: fields[0], p50_ms: fields[3], p99_ms: fields[5] }
}

async fn ours(backend: Arc<RedisBackend>, callers: usize, requests: usize) -> Run {
    let per_caller = requests / callers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_caller);
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ c as u64;
                for _ in 0..per_caller {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let bucket = format!("free:{}", x % USERS);
                    let t = Instant::now();
                    let admission = backend
                        .admit(&bucket, LIMIT, UsageLimit::NONE, Usage::ZERO, DEBT)
                        .await
                        .expect("redis answers");
                    latencies.push(t.elapsed());
                    assert!(admission.allowed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    Run { ops_per_sec: all.len() as f64 / elapsed, p50_ms: pct(0.50), p99_ms: pct(0.99) }
}

fn main() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server)");
    std::thread::sleep(Duration::from_millis(300));
    let sha = String::from_utf8(
        Command::new("redis-cli")
            .args(["-p", &port.to_string(), "SCRIPT", "LOAD", include_str!("../src/limiter/bucket.lua")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let backend = runtime.block_on(async {
        let config = RedisConfig {
            url: format!("redis://127.0.0.1:{port}"),
            mode: RedisMode::Standalone,
            nodes: vec![],
            master_name: None,
            timeout_ms: 1000,
            lease_ms: 1000,
            username_file: None,
            password_file: None,
            tls: None,
        };
        let backend = RedisBackend::new(&config).unwrap();
        backend.connect().await.unwrap();
        Arc::new(backend)
    });

    println!(
        "| callers | redis-benchmark EVALSHA ops/s | godel RedisBackend ops/s | ratio | p99 redis-benchmark | p99 godel | p99 added |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (callers, requests) in [(1, 20_000), (50, 200_000)] {
        runtime.block_on(ours(backend.clone(), callers, requests / 10)); // warm-up
        let raw = redis_benchmark(port, &sha, callers, requests);
        let mine = runtime.block_on(ours(backend.clone(), callers, requests));
        println!(
            "| {callers} | {:.0} | {:.0} | {:.2} | {:.3} ms | {:.3} ms | {:+.3} ms |",
            raw.ops_per_sec,
            mine.ops_per_sec,
            mine.ops_per_sec / raw.ops_per_sec,
            raw.p99_ms,
            mine.p99_ms,
            mine.p99_ms - raw.p99_ms
        );
        let _ = (raw.p50_ms, mine.p50_ms);
    }
    let _ = server.kill();
    let _ = server.wait();
}
