//! Jaeger v2 (built from its Go module by `scripts/control-plane.sh`) as the trace backend
//! of the tracing tests: in-memory storage, an OTLP/HTTP receiver and the query API, each
//! on a free loopback port. Queries go through `curl`, so the helper works the same from
//! a plain test and from inside an async runtime.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::TestDir;

pub struct Jaeger {
    child: Child,
    /// Base URL of the OTLP/HTTP receiver (spans go to `/v1/traces` under it), the value
    /// of `OTEL_EXPORTER_OTLP_ENDPOINT` or a policy's `telemetry.otlpEndpoint`.
    pub otlp: String,
    /// Base URL of the query API.
    pub query: String,
    _dir: TestDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

fn wait_listening(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start at {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Jaeger {
    pub fn start() -> Self {
        let dir = crate::temp_dir("jaeger");
        let (otlp, query, grpc) = (free_port(), free_port(), free_port());
        let config = dir.join("jaeger.yaml");
        std::fs::write(
            &config,
            format!(
                "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {{receivers: [otlp], exporters: [jaeger_storage_exporter]}}
  telemetry:
    metrics: {{level: none}}
    logs: {{level: warn}}
extensions:
  jaeger_storage:
    backends: {{memory_store: {{memory: {{max_traces: 10000}}}}}}
  jaeger_query:
    storage: {{traces: memory_store}}
    http: {{endpoint: '127.0.0.1:{query}'}}
    grpc: {{endpoint: '127.0.0.1:{grpc}'}}
receivers:
  otlp:
    protocols: {{http: {{endpoint: '127.0.0.1:{otlp}'}}}}
exporters:
  jaeger_storage_exporter: {{trace_storage: memory_store}}
"
            ),
        )
        .expect("write jaeger.yaml");
        let child = Command::new("jaeger")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("jaeger must be on PATH (scripts/control-plane.sh builds it)");
        let (otlp, query) = (format!("http://127.0.0.1:{otlp}"), format!("http://127.0.0.1:{query}"));
        wait_listening(&otlp, "jaeger's OTLP receiver");
        wait_listening(&query, "jaeger's query API");
        Self { child, otlp, query, _dir: dir }
    }

    /// The `data` of a query API answer (empty when Jaeger has none).
    fn get(&self, path_and_query: &str) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .arg(format!("{}{path_and_query}", self.query))
            .output()
            .expect("curl runs");
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// The spans Jaeger holds for `trace_id` now, each as the query API gives it
    /// (`operationName`, `spanID`, `references`, `tags`).
    pub fn spans(&self, trace_id: &str) -> Vec<Value> {
        self.get(&format!("/api/traces/{trace_id}"))
            .iter()
            .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The spans of `trace_id` once Jaeger holds at least `n` (exporters batch).
    pub fn wait_spans(&self, trace_id: &str, n: usize) -> Vec<Value> {
        self.wait(|| self.spans(trace_id), n, trace_id)
    }

    /// The spans named `operation` of `service`, across its traces, once there is one.
    pub fn wait_operation(&self, service: &str, operation: &str) -> Vec<Value> {
        let query = format!("/api/traces?service={service}&operation={operation}&limit=100&lookback=1h");
        let found = || {
            self.get(&query)
                .iter()
                .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
                .filter(|s| s["operationName"] == operation)
                .collect::<Vec<_>>()
        };
        self.wait(found, 1, &format!("{service} {operation}"))
    }

    fn wait(&self, query: impl Fn() -> Vec<Value>, n: usize, what: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = query();
            if spans.len() >= n {
                return spans;
            }
            assert!(Instant::now() < deadline, "jaeger holds {} spans of {what}, not {n}: {spans:#?}", spans.len());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A span's tags as a map from key to value, numbers as text (Jaeger's query API gives
/// them back as strings).
pub fn tags(span: &Value) -> std::collections::HashMap<String, String> {
    span["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let value = t["value"].as_str().map_or_else(|| t["value"].to_string(), str::to_owned);
            (t["key"].as_str().unwrap_or_default().to_owned(), value)
        })
        .collect()
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
