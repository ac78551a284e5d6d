//! The operator as users run it: the `godel-operator` binary as local processes, two
//! replicas electing a leader on the Lease, each acting as `config/operator`'s
//! ServiceAccount through kubeconfig impersonation, so the shipped RBAC is what allows
//! or refuses every request. Their reconcile spans go to the suite's Jaeger.

use std::path::PathBuf;
use std::process::{Child, Command};

pub(crate) const SERVICE_ACCOUNT: &str = "system:serviceaccount:godel-system:godel-operator";
pub(crate) const LEASE: &str = "godel-operator-leader";

pub(crate) struct Operator {
    pub identity: String,
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub(crate) fn spawn(
        identity: &str,
        kubeconfig: &std::path::Path,
        log_dir: &std::path::Path,
        otlp: &str,
    ) -> Operator {
        let log = log_dir.join(format!("{identity}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_godel-operator"))
            .args(["run", "--listen", "127.0.0.1:0", "--identity", identity, "--namespace", "godel-system"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "500")
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("the godel-operator binary starts");
        Operator { identity: identity.to_owned(), child, log }
    }

    /// SIGKILL: a crash, with no chance to hand the Lease over.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
