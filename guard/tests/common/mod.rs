//! Runs the real `godel-guard` binary on a free loopback port and collects what it
//! writes: stdout (the audit trail) and stderr (logs), line by line.

#![allow(dead_code)] // each test binary uses a different part of this helper

pub(crate) mod messages;
pub(crate) mod peers;
pub(crate) mod prometheus;
pub(crate) mod redis;
pub(crate) mod sdk;
pub(crate) mod upstream;

/// A policy with small limits, so a test reaches the throttle in a few requests.
pub(crate) const SMALL: &str = "
tiers:
  - {name: free, ratePerSecond: 0.5, burst: 3}
  - {name: premium, ratePerSecond: 50, burst: 100}
traps:
  maxPromptBytes: 1024
";

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_godel-guard");

pub(crate) use godel_tests::{TestDir, temp_dir};

pub(crate) struct Guard {
    child: Child,
    pub addr: SocketAddr,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub dir: TestDir,
}

fn collect(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

impl Guard {
    /// Starts the guard with `config` (YAML) and extra flags; panics with the guard's
    /// own stderr if it does not come up.
    pub(crate) fn start(config: &str, args: &[&str]) -> Self {
        Self::start_with_env(config, args, &[])
    }

    pub(crate) fn start_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = temp_dir("guard");
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config"])
            .arg(&config_path)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("GODEL_KEY")
            .env_remove("GODEL_SALT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn godel-guard");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect(child.stderr.take().unwrap(), stderr.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = stderr.lock().unwrap().iter().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                (v["message"] == "listening").then(|| v["addr"].as_str().unwrap().parse().unwrap())
            });
            if let Some(addr) = found {
                return Self { child, addr, stdout, stderr, dir };
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("guard exited with {status}: {:#?}", stderr.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "guard did not start: {:#?}", stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    #[allow(unsafe_code)] // kill(2), below
    pub(crate) fn sigterm(&self) {
        // SAFETY: kill(2) with a pid we spawned and still own.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
    }

    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "guard did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Audit lines written so far, parsed.
    pub(crate) fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).expect("every stdout line is a JSON audit line"))
            .collect()
    }

    /// Waits until at least `n` audit lines arrived (the writer is asynchronous).
    pub(crate) fn wait_audit(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.audit_lines();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 32-byte key as 64 hex digits, written to `dir/name`.
pub(crate) fn write_key(dir: &std::path::Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, hex_of(&[byte; 32])).unwrap();
    path
}

pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the guard writes (audit lines, or logs), kept in memory for the test to read.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a guard under test answers: a child process or this one.
pub(crate) trait Endpoint {
    fn url(&self, path: &str) -> String;
}

impl Endpoint for Guard {
    fn url(&self, path: &str) -> String {
        Guard::url(self, path)
    }
}

/// A development guard (ephemeral keys) served by this test process on a free loopback
/// port: the HTTP and proxy contracts without a child process. Start-up, signals and the
/// edge's socket handling stay with [`Guard`], the binary.
pub(crate) struct InProcess {
    pub(crate) addr: SocketAddr,
    pub(crate) audit: Captured,
    server: tokio::task::JoinHandle<()>,
}

impl InProcess {
    pub(crate) async fn start(config: &str) -> Self {
        let config = godel_guard::config::parse(config).expect("config");
        let audit = Captured::default();
        let built = godel_guard::server::build(&config, false, 1, Box::new(audit.clone())).await.expect("builds");
        let router = godel_guard::http::router(built.state, godel_guard::http::BodyLimits::new(built.body_limit));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        let server = tokio::spawn(async move { axum::serve(listener, router).await.expect("serves") });
        Self { addr, audit, server }
    }

    /// The audit lines once `n` are written (or after five seconds, however many).
    pub(crate) fn wait_audit(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<serde_json::Value> =
                self.audit.text().lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Endpoint for InProcess {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("UTF-8")
    }

    /// The first `n` JSON lines, waiting for the audit writer thread to flush them.
    pub(crate) fn lines(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<serde_json::Value> =
                self.text().lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
            if lines.len() >= n || Instant::now() > deadline {
                assert!(lines.len() >= n, "{} of {n} audit lines written", lines.len());
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
