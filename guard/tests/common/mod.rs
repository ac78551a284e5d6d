//! Runs the real `godel-guard` binary on a free loopback port and collects what it
//! writes: stdout (the audit trail) and stderr (logs), line by line.

#![allow(dead_code)] // each test binary uses a different part of this helper

pub mod peers;
pub mod redis;
pub mod upstream;

/// A policy with small limits, so a test reaches the throttle in a few requests.
pub const SMALL: &str = "
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_godel-guard");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir for one test's files. A test process
/// cannot clean up after its last test, so the first call of each one removes what test
/// processes that have since exited left behind (`godel-test-<pid>-…`, the `godel-tests`
/// crate's directories included).
pub fn temp_dir(name: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_temp_dirs);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("godel-test-{}-{name}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn sweep_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("godel-test-").and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub struct Guard {
    child: Child,
    pub addr: SocketAddr,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
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
    pub fn start(config: &str, args: &[&str]) -> Self {
        Self::start_with_env(config, args, &[])
    }

    pub fn start_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn sigterm(&self) {
        // SAFETY: kill(2) with a pid we spawned and still own.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
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
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).expect("every stdout line is a JSON audit line"))
            .collect()
    }

    /// Waits until at least `n` audit lines arrived (the writer is asynchronous).
    pub fn wait_audit(&self, n: usize) -> Vec<serde_json::Value> {
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
pub fn write_key(dir: &std::path::Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, hex_of(&[byte; 32])).unwrap();
    path
}

pub fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the guard writes (audit lines, or logs), kept in memory for the test to read.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("UTF-8")
    }

    /// The first `n` JSON lines, waiting for the audit writer thread to flush them.
    pub fn lines(&self, n: usize) -> Vec<serde_json::Value> {
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
