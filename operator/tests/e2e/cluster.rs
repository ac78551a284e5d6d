//! A disposable Kubernetes control plane on loopback: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok, started by `kwokctl --runtime binary`
//! from the binaries `scripts/control-plane.sh` builds from pinned Go modules (nothing is
//! downloaded). Three kwok nodes in three zones make pods Running and Ready without
//! containers, so Deployments roll, topology spread and the PDB have real nodes to count.
//! Dropped, it deletes the cluster; after a failure it keeps the component logs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    // At run time, from cargo: a test binary reused from a clone elsewhere (a shared
    // target directory) would otherwise look in that clone's compile-time path.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest.parent().expect("operator/ sits in the repository").to_owned()
}

pub(crate) struct Cluster {
    name: String,
    /// kwokctl's home (`KWOK_WORKDIR`): PKI, component logs, etcd data.
    workdir: PathBuf,
    /// The cluster-admin kubeconfig kwokctl writes.
    pub kubeconfig: PathBuf,
    /// Where kubectl, kwokctl and the components are.
    pub bin: PathBuf,
    /// Set when a test failed: the workdir and its logs are kept.
    pub keep: bool,
}

/// Builds (or finds in the cache) the control-plane binaries.
fn control_plane_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("GODEL_CONTROL_PLANE_BIN") {
        return dir.into();
    }
    let script = repo().join("scripts/control-plane.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed: the control plane could not be built", script.display());
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Cluster {
    /// Starts the control plane and its three nodes; panics (failing the run, never
    /// skipping it) when it does not come up.
    pub(crate) fn start() -> Cluster {
        let cluster = Cluster::start_with("godel-e2e", "kube-apiserver", None);
        cluster.kubectl_stdin(&["apply", "-f", "-"], &nodes());
        // The scheduler skips a node until it is Ready and the node lifecycle controller
        // has lifted its not-ready taint: wait for both, so spread is judged on all three.
        wait_for("three Ready, untainted nodes", Duration::from_secs(60), || {
            let nodes: serde_json::Value =
                serde_json::from_str(&cluster.kubectl(&["get", "nodes", "-o", "json"])).ok()?;
            let items = nodes["items"].as_array()?;
            let schedulable = items.iter().filter(|n| {
                let ready = n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                ready && n["spec"]["taints"].as_array().is_none_or(Vec::is_empty)
            });
            (schedulable.count() == 3).then_some(())
        });
        cluster
    }

    /// Only etcd and the oldest supported kube-apiserver: enough to judge the CRD.
    pub(crate) fn start_oldest() -> Cluster {
        let version = "v1.30.14";
        let cluster = Cluster::start_with("godel-e2e-oldest", "kube-apiserver-oldest", Some(version));
        let served = cluster.kubectl(&["version", "-o", "json"]);
        assert!(served.contains(&format!("\"gitVersion\": \"{version}\"")), "{served}");
        cluster
    }

    fn start_with(prefix: &str, apiserver: &str, only_apiserver_at: Option<&str>) -> Cluster {
        let bin = control_plane_bin();
        stop_orphans(&bin);
        let name = format!("{prefix}-{}", std::process::id());
        let workdir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&workdir);
        std::fs::create_dir_all(&workdir).expect("cluster workdir");
        let kubeconfig = workdir.join("kubeconfig");
        // Every component on loopback; kwokctl picks the free ports.
        let config = workdir.join("kwok.yaml");
        let mut options = "  bindAddress: 127.0.0.1\n".to_owned();
        if let Some(version) = only_apiserver_at {
            // kwokctl picks each component's flags by this version.
            options.push_str(&format!("  kubeVersion: {version}\n"));
        }
        let mut text =
            format!("kind: KwokctlConfiguration\napiVersion: config.kwok.x-k8s.io/v1alpha1\noptions:\n{options}");
        if only_apiserver_at.is_none() {
            text.push_str(&stages(&bin));
        }
        std::fs::write(&config, text).expect("kwokctl config");
        let cluster = Cluster { name, workdir, kubeconfig, bin, keep: false };
        let started = Instant::now();
        let b = |tool: &str| cluster.bin.join(tool).display().to_string();
        let mut command = cluster.kwokctl();
        command
            .args(["-c", &config.display().to_string()])
            .args(["create", "cluster", "--name", &cluster.name, "--runtime", "binary"])
            .args(["--kubeconfig", &cluster.kubeconfig.display().to_string()])
            .args(["--etcd-binary", &b("etcd")])
            .args(["--kube-apiserver-binary", &b(apiserver)])
            .args(["--kube-authorization", "--wait", "3m"]);
        if only_apiserver_at.is_some() {
            command.args(["--disable", "kube-controller-manager,kube-scheduler,kwok-controller"]);
        } else {
            command
                .args(["--kube-controller-manager-binary", &b("kube-controller-manager")])
                .args(["--kube-scheduler-binary", &b("kube-scheduler")])
                .args(["--kwok-controller-binary", &b("kwok")]);
        }
        let out = command.output().expect("kwokctl runs");
        if !out.status.success() {
            let mut cluster = cluster;
            cluster.keep = true;
            panic!(
                "the control plane did not come up ({}):\n{}\n{}\ncomponent logs kept in {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                cluster.logs().display()
            );
        }
        eprintln!("control plane up in {:.1} s ({})", started.elapsed().as_secs_f64(), cluster.workdir.display());
        cluster
    }

    fn kwokctl(&self) -> Command {
        let mut command = Command::new(self.bin.join("kwokctl"));
        command.env("KWOK_WORKDIR", &self.workdir);
        command
    }

    /// Where the suite's own files go (operator logs, kubeconfigs).
    pub(crate) fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Component logs (etcd, kube-apiserver, …), one file each.
    pub(crate) fn logs(&self) -> PathBuf {
        self.workdir.join("clusters").join(&self.name).join("logs")
    }

    /// `kubectl` against this cluster as cluster-admin, returning its whole output.
    pub(crate) fn kubectl_output(&self, args: &[&str]) -> Output {
        self.kubectl_command(&self.kubeconfig).args(args).output().expect("kubectl runs")
    }

    /// A kubectl command with the given kubeconfig, from the repository root (where the
    /// README's commands are run) and with the cluster's binaries first on PATH.
    pub(crate) fn kubectl_command(&self, kubeconfig: &Path) -> Command {
        let mut command = Command::new(self.bin.join("kubectl"));
        command.env("KUBECONFIG", kubeconfig).current_dir(repo());
        command
    }

    /// `kubectl`; panics with its output unless it succeeds.
    pub(crate) fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl` with `input` on stdin; returns the output, success or not.
    pub(crate) fn kubectl_stdin_output(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .kubectl_command(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().expect("piped stdin").write_all(input.as_bytes()).expect("write to kubectl");
        child.wait_with_output().expect("kubectl finishes")
    }

    pub(crate) fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_stdin_output(args, input);
        assert!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kubeconfig that acts as `user` through impersonation, so RBAC judges every
    /// request as it would judge that identity's in the cluster.
    pub(crate) fn impersonating_kubeconfig(&self, user: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let mut config: serde_json::Value = serde_yaml::from_str(&admin).expect("kubeconfig is YAML");
        for entry in config["users"].as_array_mut().expect("kubeconfig users") {
            entry["user"]["as"] = user.into();
        }
        let path = self.workdir.join(format!("kubeconfig-{}", user.replace(':', "-")));
        std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML")).expect("write kubeconfig");
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.keep {
            // Stopping keeps the cluster's files; deleting would remove its logs.
            let _ = self.kwokctl().args(["stop", "cluster", "--name", &self.name]).output();
            eprintln!("a test failed: logs kept in {}", self.workdir.display());
        } else {
            let _ = self.kwokctl().args(["delete", "cluster", "--name", &self.name]).output();
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}

/// Stops the components of clusters whose test run was killed before its teardown (their
/// directory names the dead process), keeping their files and logs.
fn stop_orphans(bin: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("godel-e2e-").map(|rest| rest.rsplit('-').next().unwrap_or(rest)) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let _ = Command::new(bin.join("kwokctl"))
            .env("KWOK_WORKDIR", entry.path())
            .args(["stop", "cluster", "--name", &name])
            .output();
    }
}

/// Three fake nodes, one per zone, each with room for the guards.
/// A guard pod's readiness is its guard's (`pods.rs`): kwok's default Stages, except that
/// its pod-ready Stage leaves guard pods alone, and one that makes a guard pod Running
/// but not ready, for the harness to report what its probe says.
fn stages(bin: &Path) -> String {
    const GUARD_RUNNING: &str = include_str!("guard-pod-running.yaml");
    let dir = bin.join("kwok-stages");
    let mut out = String::new();
    for name in ["node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete"] {
        let path = dir.join(format!("{name}.yaml"));
        let mut stage = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (scripts/control-plane.sh copies kwok's Stages)", path.display()));
        if name == "pod-ready" {
            let guard = "    matchExpressions:\n    - key: '.metadata.labels[\"app.kubernetes.io/name\"]'\n      \
                         operator: 'NotIn'\n      values:\n      - 'godel-guard'\n";
            assert!(stage.contains("    matchExpressions:\n"), "kwok's pod-ready Stage changed shape");
            stage = stage.replacen("    matchExpressions:\n", guard, 1);
        }
        out.push_str("---\n");
        out.push_str(&stage);
    }
    out.push_str("---\n");
    out.push_str(GUARD_RUNNING);
    out
}

fn nodes() -> String {
    ["a", "b", "c"]
        .iter()
        .map(|zone| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: kwok-node-{zone}\n  annotations: {{kwok.x-k8s.io/node: fake}}\n  \
                 labels:\n    type: kwok\n    kubernetes.io/hostname: kwok-node-{zone}\n    kubernetes.io/os: linux\n    \
                 topology.kubernetes.io/zone: zone-{zone}\nstatus:\n  allocatable: {{cpu: '32', memory: 256Gi, pods: '110'}}\n  \
                 capacity: {{cpu: '32', memory: 256Gi, pods: '110'}}\n---\n"
            )
        })
        .collect()
}

/// Polls `check` every 250 ms until it returns `Some`, or panics naming `what`.
pub(crate) fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
