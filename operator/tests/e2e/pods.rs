//! A kubelet stand-in for guard pods: every pod the fake nodes run from a guard
//! Deployment is backed by a real `godel-guard`, started with the pod's args and env, its
//! ConfigMap and Secret volumes bind-mounted at their mount paths in a private mount
//! namespace, listening inside a network namespace of its own (loopback only, nothing
//! else reachable). Its readiness probe is run against it there and reported as the
//! pod's Ready condition, so the Deployment, the policy's status and `kubectl get
//! guardrails` show what a real kubelet would: a guard that exits or fails its probe is
//! a pod that is not ready.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// One guard process and what was last reported for its pod.
struct Guard {
    child: Child,
    reported: Option<bool>,
}

/// The guards, by pod `namespace/name/uid`.
type Guards = Arc<Mutex<BTreeMap<String, Guard>>>;

pub(crate) struct Kubelet {
    stop: Arc<AtomicBool>,
    guards: Guards,
    thread: Option<JoinHandle<()>>,
}

/// What the harness needs to talk to the cluster.
#[derive(Clone)]
pub(crate) struct Kube {
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kube {
    fn run(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.kubectl).arg("--kubeconfig").arg(&self.kubeconfig).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        self.run(args).and_then(|out| serde_json::from_str(&out).ok())
    }
}

/// The guard binary the workspace built beside this test.
fn guard_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let guard = dir.join("godel-guard");
    assert!(guard.exists(), "{} is missing: build the workspace (cargo test --workspace builds it)", guard.display());
    guard
}

impl Kubelet {
    pub(crate) fn start(kube: Kube, workdir: &Path) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let guards: Guards = Arc::default();
        let binary = guard_binary();
        let root = workdir.join("pods");
        let (stop2, guards2) = (stop.clone(), guards.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                sync(&kube, &binary, &root, &guards2);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Kubelet { stop, guards, thread: Some(thread) }
    }

    /// Sends `body` to `path` of the guard behind a pod (`namespace/name`), inside its
    /// network namespace; returns the HTTP status and body.
    pub(crate) fn request(&self, pod: &str, path: &str, body: &str) -> (u16, String) {
        let guards = self.guards.lock().unwrap_or_else(|e| e.into_inner());
        let (_, guard) =
            guards.iter().find(|(key, _)| key.starts_with(&format!("{pod}/"))).expect("a guard runs for the pod");
        let out = in_netns(guard.child.id())
            .args(["curl", "-s", "-m", "5", "-w", "\n%{http_code}", "-H", "content-type: application/json"])
            .args(["--data-binary", body, &format!("http://127.0.0.1:8080{path}")])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for (_, mut guard) in std::mem::take(&mut *self.guards.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = guard.child.kill();
            let _ = guard.child.wait();
        }
    }
}

fn in_netns(pid: u32) -> Command {
    let mut command = Command::new("nsenter");
    command.args(["--target", &pid.to_string(), "--net", "--"]);
    command
}

/// One pass: start a guard for every running guard pod without one, stop those whose pod
/// went, probe the rest and report changes.
fn sync(kube: &Kube, binary: &Path, root: &Path, guards: &Guards) {
    let Some(list) = kube.json(&["get", "pods", "-A", "-l", "app.kubernetes.io/name=godel-guard", "-o", "json"]) else {
        return;
    };
    let pods: Vec<&Value> = list["items"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let live: Vec<(String, &Value)> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running")
        .map(|p| {
            let m = &p["metadata"];
            (format!("{}/{}/{}", text(&m["namespace"]), text(&m["name"]), text(&m["uid"])), *p)
        })
        .collect();
    let mut guards = guards.lock().unwrap_or_else(|e| e.into_inner());
    guards.retain(|key, guard| {
        let keep = live.iter().any(|(k, _)| k == key);
        if !keep {
            terminate(&mut guard.child);
        }
        keep
    });
    for (key, pod) in &live {
        if !guards.contains_key(key) {
            match start(kube, binary, root, pod) {
                Ok(child) => {
                    guards.insert(key.clone(), Guard { child, reported: None });
                }
                Err(why) => eprintln!("pod {key}: no guard started: {why}"),
            }
        }
        let Some(guard) = guards.get_mut(key) else { continue };
        let ready = match guard.child.try_wait() {
            Ok(None) => probe(guard.child.id()),
            _ => false,
        };
        if guard.reported != Some(ready) && report(kube, pod, ready) {
            guard.reported = Some(ready);
        }
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn terminate(child: &mut Child) {
    // It may have exited already (a guard that could not start).
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).stderr(Stdio::null()).status();
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The readiness probe the pod declares (an HTTP GET), run in the guard's namespace.
fn probe(pid: u32) -> bool {
    in_netns(pid)
        .args(["curl", "-s", "-o", "/dev/null", "-m", "2", "-f", "http://127.0.0.1:8080/health"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes the pod's Ready condition and container status, as a kubelet does.
fn report(kube: &Kube, pod: &Value, ready: bool) -> bool {
    let now = k8s_now();
    let status = if ready { "True" } else { "False" };
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "ready": ready, "restartCount": 0,
                   "state": {"running": {"startedAt": pod["status"]["startTime"]}}})
        })
        .collect();
    let patch = json!({"status": {
        "conditions": [
            {"type": "Ready", "status": status, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
        ],
        "containerStatuses": containers,
    }});
    let m = &pod["metadata"];
    kube.run(&[
        "-n",
        text(&m["namespace"]),
        "patch",
        "pod",
        text(&m["name"]),
        "--subresource=status",
        "--type=strategic",
        "-p",
        &patch.to_string(),
    ])
    .is_some()
}

fn k8s_now() -> Value {
    json!(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()))
}

/// Lays out the pod's volumes and starts its guard in new mount and network namespaces.
fn start(kube: &Kube, binary: &Path, root: &Path, pod: &Value) -> Result<Child, String> {
    let m = &pod["metadata"];
    let ns = text(&m["namespace"]);
    let dir = root.join(format!("{ns}-{}", text(&m["name"])));
    let _ = std::fs::remove_dir_all(&dir);
    let container = &pod["spec"]["containers"][0];
    let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for (n, mount) in container["volumeMounts"].as_array().into_iter().flatten().enumerate() {
        let path = text(&mount["mountPath"]).to_owned();
        let volume =
            volumes.iter().find(|v| v["name"] == mount["name"]).ok_or_else(|| format!("no volume for {path}"))?;
        let source = dir.join(format!("volume-{n}"));
        std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
        let files = volume_files(kube, ns, volume)?;
        for (name, bytes) in files {
            std::fs::write(source.join(name), bytes).map_err(|e| e.to_string())?;
        }
        mounts.push((path, source));
    }
    // Parents first; a mount point inside another mount is made in that mount's source.
    mounts.sort_by_key(|(path, _)| path.len());
    for (n, (path, _)) in mounts.iter().enumerate() {
        let parent = mounts[..n].iter().rev().find(|(p, _)| path.starts_with(&format!("{p}/")));
        let point = match parent {
            Some((p, source)) => source.join(&path[p.len() + 1..]),
            None => PathBuf::from(path),
        };
        std::fs::create_dir_all(&point).map_err(|e| format!("mount point {}: {e}", point.display()))?;
    }
    let mut script = String::from("set -e; ip link set lo up; ");
    for (path, source) in &mounts {
        script.push_str(&format!("mount --bind '{}' '{path}'; ", source.display()));
    }
    script.push_str("exec \"$0\" \"$@\"");
    let mut command = Command::new("unshare");
    command.args(["--mount", "--net", "--propagation", "private", "--", "sh", "-c", &script]);
    command.arg(binary);
    command.args(container["args"].as_array().into_iter().flatten().map(|a| text(a).to_owned()));
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for env in container["env"].as_array().into_iter().flatten() {
        let value = match (&env["value"], &env["valueFrom"]["configMapKeyRef"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::Object(r)) => {
                let cm = kube
                    .json(&["-n", ns, "get", "configmap", text(&r["name"]), "-o", "json"])
                    .ok_or("the env ConfigMap is missing")?;
                text(&cm["data"][text(&r["key"])]).to_owned()
            }
            _ => return Err(format!("env {} is neither a value nor a ConfigMap key", env["name"])),
        };
        command.env(text(&env["name"]), value);
    }
    let log = std::fs::File::create(dir.join("guard.log")).map_err(|e| e.to_string())?;
    command.stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
    command.spawn().map_err(|e| e.to_string())
}

/// The files a ConfigMap or Secret volume holds.
fn volume_files(kube: &Kube, ns: &str, volume: &Value) -> Result<Vec<(String, Vec<u8>)>, String> {
    if let Some(name) = volume["configMap"]["name"].as_str() {
        let cm = kube.json(&["-n", ns, "get", "configmap", name, "-o", "json"]).ok_or("ConfigMap missing")?;
        let data = cm["data"].as_object().cloned().unwrap_or_default();
        return Ok(data.into_iter().map(|(k, v)| (k, text(&v).as_bytes().to_vec())).collect());
    }
    if let Some(name) = volume["secret"]["secretName"].as_str() {
        let secret = kube.json(&["-n", ns, "get", "secret", name, "-o", "json"]).ok_or("Secret missing")?;
        let data = secret["data"].as_object().cloned().unwrap_or_default();
        return data
            .into_iter()
            .map(|(k, v)| {
                base64::engine::general_purpose::STANDARD.decode(text(&v)).map(|b| (k, b)).map_err(|e| e.to_string())
            })
            .collect();
    }
    Err(format!("volume {} is neither a ConfigMap nor a Secret", volume["name"]))
}
