//! The operator against a real Kubernetes control plane (see `cluster.rs`), started by
//! this suite on loopback: the API server judges the CRD, its CEL rules and their cost,
//! server-side apply, the status subresource, RBAC, garbage collection and the printer
//! columns. Every scenario is one named test; they run one after another on one
//! cluster, each in its own namespace. Part of `scripts/test.sh`: a control plane that
//! does not come up fails the run.

mod cluster;
mod operators;
mod pods;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster::{Cluster, repo, wait_for};
use libtest_mimic::{Arguments, Failed, Trial};
use operators::{LEASE, Operator, SERVICE_ACCOUNT};
use serde_json::Value;

/// The cluster and the operators every scenario shares; the guards behind its pods.
struct World {
    kubelet: pods::Kubelet,
    cluster: Cluster,
    operators: Mutex<Vec<Operator>>,
    /// Where the operators export their reconcile spans.
    jaeger: godel_tests::jaeger::Jaeger,
    installed: AtomicBool,
    failed: AtomicBool,
}

type Scenario = fn(&World);

/// A prompt carrying an AWS access key id, which every policy blocks.
const KEY_PROMPT: &str = "my key is AKIAZ7TQ3M5YB2XK9WFE, keep it safe";

const SCENARIOS: &[(&str, Scenario)] = &[
    ("quickstart_from_the_readme", quickstart),
    ("cel_rules_samples_and_integer_ranges_at_admission", admission),
    ("steady_state_writes_nothing", steady_state),
    ("changes_roll_the_fleet_and_autoscaling_keeps_its_size", rollouts),
    ("failures_are_visible_in_status_and_leave_the_fleet_alone", failures),
    ("hand_edits_and_deletions_are_put_back", drift),
    ("deleting_a_policy_removes_what_it_owned", garbage_collection),
    ("monitoring_objects_follow_the_prometheus_operator_crds", monitoring),
    ("leader_election_survives_a_crash_and_a_failed_renewal", leader_election),
    ("rbac_allows_what_the_operator_does_and_no_more", rbac),
    ("the_oldest_supported_kubernetes_accepts_the_crd", oldest_kubernetes),
    // Last: it replaces the kustomize install with the chart's.
    ("the_helm_chart_installs_what_the_quickstart_needs", helm_chart),
];

fn main() {
    let mut args = Arguments::from_args();
    // One cluster, scenarios in order: they share the operators and the leader test
    // restarts them.
    args.test_threads = Some(1);
    let world = (!args.list).then(|| {
        let cluster = Cluster::start();
        let kube = pods::Kube { kubectl: cluster.bin.join("kubectl"), kubeconfig: cluster.kubeconfig.clone() };
        Arc::new(World {
            kubelet: pods::Kubelet::start(kube, cluster.workdir()),
            cluster,
            operators: Mutex::new(Vec::new()),
            jaeger: godel_tests::jaeger::Jaeger::start(),
            installed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        })
    });
    let trials = SCENARIOS
        .iter()
        .map(|(name, scenario)| {
            let world = world.clone();
            let scenario = *scenario;
            Trial::test(*name, move || {
                let world = world.expect("the cluster is started unless only listing");
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&world)));
                result.map_err(|panic| {
                    world.failed.store(true, Ordering::SeqCst);
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "panicked".into());
                    Failed::from(message)
                })
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(world) = world {
        let failed = world.failed.load(Ordering::SeqCst) || conclusion.has_failed();
        let operators = std::mem::take(&mut *world.operators.lock().unwrap_or_else(|e| e.into_inner()));
        for operator in &operators {
            if failed {
                eprintln!("operator {} log: {}", operator.identity, operator.log.display());
            }
        }
        drop(operators);
        match Arc::try_unwrap(world) {
            Ok(mut world) => {
                world.cluster.keep = failed;
            }
            Err(_) => eprintln!("the cluster is still referenced; it is deleted at exit"),
        }
    }
    conclusion.exit();
}

impl World {
    fn operators(&self) -> MutexGuard<'_, Vec<Operator>> {
        self.operators.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_dir(&self) -> std::path::PathBuf {
        self.cluster.workdir().to_owned()
    }

    /// The two operator replicas, acting as the shipped ServiceAccount.
    fn start_operators(&self) {
        let kubeconfig = self.cluster.impersonating_kubeconfig(SERVICE_ACCOUNT);
        let mut operators = self.operators();
        operators.clear();
        for identity in ["operator-a", "operator-b"] {
            operators.push(Operator::spawn(identity, &kubeconfig, &self.log_dir(), &self.jaeger.otlp));
        }
    }

    /// `config/default` applied and the operators running: what the quickstart does,
    /// for scenarios run on their own.
    fn install(&self) {
        if self.installed.load(Ordering::SeqCst) {
            return;
        }
        self.cluster.kubectl(&["apply", "--server-side", "-k", "config/default"]);
        self.wait_crd_established("guardrailpolicies.guardrails.godel.dev");
        self.start_operators();
        self.installed.store(true, Ordering::SeqCst);
    }

    fn wait_crd_established(&self, crd: &str) {
        self.cluster.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", &format!("crd/{crd}")]);
    }

    fn namespace(&self, ns: &str) {
        let out = self.cluster.kubectl_output(&["create", "namespace", ns]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || stderr.contains("AlreadyExists"), "create namespace {ns}: {stderr}");
    }

    /// The keys Secret, created as docs/SECURITY.md says.
    fn keys_secret(&self, ns: &str, name: &str) {
        self.cluster.kubectl(&[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=audit-key={}", random_hex()),
            &format!("--from-literal=salt={}", random_hex()),
        ]);
    }

    /// A namespace with a keys Secret `<name>-keys` and a Ready policy mounting it,
    /// with `extra` spec lines; returns the policy's spec, for edits.
    fn ready_policy(&self, ns: &str, name: &str, extra: &str) -> String {
        self.install();
        self.namespace(ns);
        self.keys_secret(ns, &format!("{name}-keys"));
        let spec = keyed_spec(&format!("{name}-keys"), extra);
        self.apply(&policy_manifest(ns, name, &spec));
        self.wait_ready(ns, name);
        spec
    }

    fn apply(&self, manifest: &str) {
        self.cluster.kubectl_stdin(&["apply", "--server-side", "--validate=strict", "-f", "-"], manifest);
    }

    /// `kubectl get <what> -o json`; `what` may carry flags (`pods -l app=x`).
    fn get(&self, ns: &str, what: &str) -> Option<Value> {
        let mut args = vec!["-n", ns, "get"];
        args.extend(what.split_whitespace());
        args.extend(["-o", "json"]);
        let out = self.cluster.kubectl_output(&args);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("kubectl prints JSON"))
    }

    fn policy(&self, ns: &str, name: &str) -> Value {
        self.get(ns, &format!("guardrailpolicy/{name}")).expect("the policy exists")
    }

    /// `(status, reason, message)` of a condition, once the operator has observed the
    /// current generation.
    fn condition(&self, ns: &str, name: &str, type_: &str) -> Option<(String, String, String)> {
        let policy = self.policy(ns, name);
        let observed = policy["status"]["observedGeneration"] == policy["metadata"]["generation"];
        let conditions = policy["status"]["conditions"].as_array()?;
        let c = conditions.iter().find(|c| c["type"] == type_)?;
        let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
        observed.then(|| (text("status"), text("reason"), text("message")))
    }

    fn wait_condition(&self, ns: &str, name: &str, type_: &str, status: &str, timeout: Duration) -> (String, String) {
        wait_for(&format!("{ns}/{name} {type_}={status}"), timeout, || {
            self.condition(ns, name, type_).filter(|(s, ..)| s == status).map(|(_, reason, message)| (reason, message))
        })
    }

    fn wait_ready(&self, ns: &str, name: &str) {
        self.wait_condition(ns, name, "Ready", "True", Duration::from_secs(90));
    }

    /// Events about a policy with this reason.
    fn events(&self, ns: &str, name: &str, reason: &str) -> Vec<Value> {
        let list = self.get(ns, "events.events.k8s.io").expect("events list");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
            .cloned()
            .collect()
    }

    /// ReplicaSets of a policy's Deployment.
    fn replica_sets(&self, ns: &str, name: &str) -> usize {
        let list = self.get(ns, &format!("replicasets -l app.kubernetes.io/instance={name}")).expect("list");
        list["items"].as_array().map_or(0, Vec::len)
    }

    /// `kind/name` → `value` of each object labelled as the policy's.
    fn owned(&self, ns: &str, name: &str, value: impl Fn(&Value) -> String) -> BTreeMap<String, String> {
        let kinds =
            "serviceaccounts,configmaps,deployments,services,poddisruptionbudgets,horizontalpodautoscalers,ingresses";
        let selector = format!("app.kubernetes.io/instance={name}");
        let out =
            self.cluster.kubectl(&["-n", ns, "get", kinds, "-l", &selector, "-o", "json", "--show-managed-fields"]);
        let list: Value = serde_json::from_str(&out).expect("JSON");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
                (format!("{}/{}", text(&o["kind"]), text(&o["metadata"]["name"])), value(o))
            })
            .collect()
    }

    /// `kind/name` → resourceVersion of everything labelled as the policy's.
    fn owned_versions(&self, ns: &str, name: &str) -> BTreeMap<String, String> {
        self.owned(ns, name, |o| {
            // The HPA controller writes its own status every sync; what the
            // operator wrote is the spec, whose changes move the generation.
            if o["kind"] == "HorizontalPodAutoscaler" {
                format!("generation {}", o["metadata"]["generation"])
            } else {
                o["metadata"]["resourceVersion"].as_str().unwrap_or("").to_owned()
            }
        })
    }

    /// `kind/name` → when the operator's field manager last changed each object labelled
    /// as the policy's (an apply that changes nothing leaves it).
    fn operator_writes(&self, ns: &str, name: &str) -> BTreeMap<String, String> {
        self.owned(ns, name, |o| {
            o["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["manager"] == "godel-operator" && f["operation"] == "Apply")
                .and_then(|f| f["time"].as_str())
                .unwrap_or("")
                .to_owned()
        })
    }

    /// The decision of the real guard behind the policy's first pod on `prompt`.
    fn guard_decides(&self, ns: &str, policy: &str, prompt: &str) -> String {
        let pods = self.get(ns, &format!("pods -l app.kubernetes.io/instance={policy}")).expect("pods");
        let pod = format!("{ns}/{}", pods["items"][0]["metadata"]["name"].as_str().expect("a pod"));
        let request = serde_json::json!({"user_id": "alice", "prompt": prompt}).to_string();
        let (status, body) = self.kubelet.request(&pod, "/v1/inspect", &request);
        assert_eq!(status, 200, "{body}");
        let verdict: Value = serde_json::from_str(&body).expect("JSON verdict");
        verdict["decision"].as_str().unwrap_or_else(|| panic!("no decision: {body}")).to_owned()
    }

    fn leader(&self) -> Option<String> {
        let lease = self.get("godel-system", &format!("lease/{LEASE}"))?;
        lease["spec"]["holderIdentity"].as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    }
}

fn random_hex() -> String {
    let out = std::process::Command::new("openssl").args(["rand", "-hex", "32"]).output().expect("openssl runs");
    String::from_utf8(out.stdout).expect("hex").trim().to_owned()
}

fn policy_manifest(ns: &str, name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: guardrails.godel.dev/v1alpha1\nkind: GuardrailPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

/// A policy with keys from a mounted Secret, as the basic sample.
fn keyed_spec(secret: &str, extra: &str) -> String {
    format!(
        "guard:\n  audit:\n    key: {{file: {{path: /etc/godel/keys/audit-key}}}}\n    salt: {{file: {{path: /etc/godel/keys/salt}}}}\n\
         secrets:\n  - {{name: {secret}, mountPath: /etc/godel/keys}}\n{extra}\n"
    )
}

/// The commands of the README's Kubernetes quickstart, with continuation lines joined
/// and trailing comments dropped, and the output it shows.
fn readme_quickstart() -> (Vec<String>, Vec<String>) {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme.split("## On Kubernetes: the operator").nth(1).expect("the README's Kubernetes section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let mut commands = Vec::new();
    let mut output = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if let Some(shown) = line.strip_prefix("# ") {
            output.push(shown.to_owned());
            continue;
        }
        let code = line.split("  #").next().unwrap_or("").trim_end();
        match code.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(code);
                if !current.trim().is_empty() {
                    commands.push(current.trim().to_owned());
                }
                current.clear();
            }
        }
    }
    (commands, output)
}

fn quickstart(world: &World) {
    let (commands, shown) = readme_quickstart();
    assert!(commands.len() >= 4, "the quickstart lost commands: {commands:?}");
    let security = std::fs::read_to_string(repo().join("docs/SECURITY.md")).expect("SECURITY.md");
    let secret_command =
        commands.iter().find(|c| c.contains("create secret")).expect("the quickstart creates the keys Secret");
    let security_flat = security.replace("\\\n", "").split_whitespace().collect::<Vec<_>>().join(" ");
    let secret_flat = secret_command.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(security_flat.contains(&secret_flat), "docs/SECURITY.md must say `{secret_command}`");

    let path = format!("{}:{}", world.cluster.bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut listing = String::new();
    for command in &commands {
        if command.contains("get guardrails") {
            world.wait_ready("default", "chatbot");
        }
        let out = std::process::Command::new("bash")
            .args(["-ec", command])
            .env("PATH", &path)
            .env("KUBECONFIG", &world.cluster.kubeconfig)
            .current_dir(repo())
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "README command `{command}` failed:\n{}", String::from_utf8_lossy(&out.stderr));
        if command.contains("apply --server-side -k config/default") {
            world.wait_crd_established("guardrailpolicies.guardrails.godel.dev");
            world.start_operators();
            world.installed.store(true, Ordering::SeqCst);
        }
        if command.contains("get guardrails") {
            listing = String::from_utf8_lossy(&out.stdout).into_owned();
        }
    }

    // The listing has the README's columns and the row it shows, but for the age.
    let rows: Vec<Vec<&str>> = listing.lines().map(|l| l.split_whitespace().collect()).collect();
    let shown: Vec<Vec<&str>> = shown.iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.first(), shown.first(), "columns of `kubectl get guardrails -A`:\n{listing}");
    let chatbot = rows.iter().find(|r| r.get(1) == Some(&"chatbot")).expect("chatbot is listed");
    let readme_row = shown.iter().find(|r| r.get(1) == Some(&"chatbot")).expect("the README shows chatbot");
    assert_eq!(chatbot[..5], readme_row[..5], "listing:\n{listing}");
    assert_eq!(&chatbot[2..5], &["True", "3/3", "local"]);
    assert!(chatbot[5].ends_with('s') || chatbot[5].ends_with('m'), "AGE column: {listing}");

    // Two replicas, one leader.
    let leader = wait_for("a leader", Duration::from_secs(30), || world.leader());
    assert!(["operator-a", "operator-b"].contains(&leader.as_str()), "leader {leader}");
    let mut operators = world.operators();
    assert!(operators.iter_mut().all(Operator::running), "both operator replicas run");
    let leading: Vec<_> =
        operators.iter().filter(|o| o.log_text().contains("\"leading\"")).map(|o| o.identity.clone()).collect();
    assert_eq!(leading, [leader], "exactly one replica leads");
    drop(operators);

    // The leader's reconciles are traced: spans named for the policy, in Jaeger.
    let reconciles = world.jaeger.wait_operation("godel-operator", "reconcile");
    let policies: Vec<String> =
        reconciles.iter().filter_map(|s| godel_tests::jaeger::tags(s).remove("policy")).collect();
    assert!(policies.iter().any(|p| p == "default/chatbot"), "reconcile spans: {policies:?}");

    // A real guard behind a pod, with the policy's config: a secret is blocked, an
    // ordinary prompt allowed.
    assert_eq!(world.guard_decides("default", "chatbot", KEY_PROMPT), "block");
    assert_eq!(world.guard_decides("default", "chatbot", "Plan a day in Porto."), "allow");

    // The guard pods spread over the three zones.
    let pods = world.get("default", "pods -l app.kubernetes.io/instance=chatbot").expect("pods");
    let mut nodes: Vec<&str> =
        pods["items"].as_array().unwrap().iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "three guards on three nodes (zones): {nodes:?}");
}

fn admission(world: &World) {
    world.install();
    let ns = "e2e-admission";
    world.namespace(ns);
    let refused = |spec: &str, expected: &str| {
        let out = world.cluster.kubectl_stdin_output(
            &["apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-"],
            &policy_manifest(ns, "refused", spec),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the API server accepted:\n{spec}");
        assert!(stderr.contains(expected), "refusal of\n{spec}\nlacks `{expected}`:\n{stderr}");
    };
    refused(
        "guard: {defaultTier: gold, tiers: [{name: free, ratePerSecond: 1, burst: 1}]}",
        "defaultTier must name one of the tiers",
    );
    refused("guard: {tiers: [{name: free, ratePerSecond: 0, burst: 10}]}", "ratePerSecond must be positive");
    refused("guard: {rateLimit: {backend: redis}}", "backend redis needs the redis settings");
    refused(
        "guard: {rateLimit: {backend: redis, redis: {url: 'redis://r:26379', mode: sentinel}}}",
        "sentinel mode needs masterName",
    );
    refused(
        "guard: {rateLimit: {backend: redis, redis: {url: 'redis://r:6379', leaseMs: 20000}}}",
        "spec.guard.rateLimit.redis.leaseMs",
    );
    refused("autoscaling: {minReplicas: 5, maxReplicas: 2}", "minReplicas must not exceed maxReplicas");
    refused(
        "ingress: {host: g.example.com, controller: alb, requestsPerSecond: 10}",
        "an ALB rate-limits through a WAF web ACL: set wafAclArn",
    );
    // Out-of-range integers stop at admission instead of stalling every watcher.
    refused("guard: {tiers: [{name: free, ratePerSecond: 1, burst: 5000000000}]}", "4294967295");
    refused("guard: {tiers: [{name: free, ratePerSecond: 1, burst: 0}]}", "spec.guard.tiers[0].burst");
    refused("deployment: {replicas: 5000000000}", "2147483647");
    refused("guard: {traps: {maxPromptBytes: -1}}", "spec.guard.traps.maxPromptBytes");
    refused("guard: {traps: {regex: {rules: [{name: '', pattern: x}]}}}", "rules[0].name");
    refused("guard: {traps: {untrusted: {threshold: 1.5}}}", "spec.guard.traps.untrusted.threshold");
    refused("guard: {traps: {regex: {packs: [indirekt]}}}", "spec.guard.traps.regex.packs[0]");
    refused(
        "deployment: {terminationGracePeriodSeconds: 10, preStopDelaySeconds: 9}",
        "terminationGracePeriodSeconds must be longer than preStopDelaySeconds",
    );
    // Words YAML 1.1 cannot misread: `none` as it is, the old `off` when quoted.
    let accepted = |spec: &str| {
        let out = world.cluster.kubectl_stdin_output(
            &["apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-"],
            &policy_manifest(ns, "accepted", spec),
        );
        assert!(out.status.success(), "refused:\n{spec}\n{}", String::from_utf8_lossy(&out.stderr));
    };
    accepted("guard: {proxy: {upstream: 'http://llm:8000', output: {action: none}}}");
    // Admission leases off: every request one call to Redis.
    accepted("guard: {rateLimit: {backend: redis, redis: {url: 'redis://r:6379', leaseMs: 0}}}");
    accepted("guard: {proxy: {upstream: 'http://llm:8000', output: {action: 'off'}}}");
    // Our kind stays addressable beside another project's GuardrailPolicy.
    for name in ["ggp", "guardrailpolicies.guardrails.godel.dev", "godel"] {
        world.cluster.kubectl(&["-n", ns, "get", name]);
    }
    let long_name = "a".repeat(58);
    let out = world.cluster.kubectl_stdin_output(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &policy_manifest(ns, &long_name, "{}"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("metadata.name must be at most 57 characters"));
    // Strict field validation names an unknown field.
    refused("guard: {tierz: []}", "tierz");
    refused("autoscaling: {maxReplicas: 3, targetCpuUtilizationPercentage: 50}", "targetCpuUtilizationPercentage");

    // Every sample is accepted as a directory, with strict validation.
    let out = world.cluster.kubectl(&["apply", "--server-side", "--validate=strict", "-f", "config/samples/"]);
    assert!(out.contains("chatbot") && out.contains("payments-assistant"), "{out}");
}

fn steady_state(world: &World) {
    let ns = "e2e-steady";
    let spec = world.ready_policy(
        ns,
        "steady",
        "autoscaling: {minReplicas: 3, maxReplicas: 6}\ningress: {host: guard.example.com, controller: nginx, requestsPerSecond: 20}",
    );
    let manifest = policy_manifest(ns, "steady", &spec);
    // Ready means the autoscaler's minimum is ready, not the new Deployment's first pod.
    let status = &world.policy(ns, "steady")["status"];
    assert_eq!(status["replicaSummary"], "3/3", "Ready before the fleet reached its minimum: {status}");
    let before = world.owned_versions(ns, "steady");
    for kind in [
        "ServiceAccount/steady-guard",
        "ConfigMap/steady-guard",
        "ConfigMap/steady-guard-dashboard",
        "Deployment/steady-guard",
        "Service/steady-guard",
        "PodDisruptionBudget/steady-guard",
        "HorizontalPodAutoscaler/steady-guard",
        "Ingress/steady-guard",
    ] {
        assert!(before.contains_key(kind), "{kind} missing from {before:?}");
    }
    let status_before = world.policy(ns, "steady")["status"].clone();

    // A metadata change wakes the reconciler without changing the spec.
    world.cluster.kubectl(&["-n", ns, "annotate", "guardrailpolicy/steady", "e2e/touched=1"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(world.owned_versions(ns, "steady"), before, "a pass over an unchanged policy wrote");

    // A restarted operator reads everything again and writes nothing.
    world.start_operators();
    wait_for("a new leader", Duration::from_secs(30), || {
        world.leader().filter(|_| world.operators().iter().any(|o| o.log_text().contains("\"leading\"")))
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(world.owned_versions(ns, "steady"), before, "a restarted operator wrote");
    assert_eq!(world.policy(ns, "steady")["status"], status_before, "the status was rewritten");

    // What Argo CD's diff sees: nothing, for this policy and for each sample.
    let diff = world.cluster.kubectl_stdin_output(&["diff", "--server-side", "-f", "-"], &manifest);
    assert!(diff.status.success() && diff.stdout.is_empty(), "kubectl diff: {}", String::from_utf8_lossy(&diff.stdout));
    world.cluster.kubectl(&["apply", "--server-side", "--validate=strict", "-f", "config/samples/"]);
    for sample in ["guardrailpolicy-basic.yaml", "guardrailpolicy-production.yaml"] {
        let out = world.cluster.kubectl_output(&["diff", "--server-side", "-f", &format!("config/samples/{sample}")]);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "kubectl diff {sample}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn rollouts(world: &World) {
    let ns = "e2e-rollouts";
    let base = world.ready_policy(ns, "roll", "serviceAccount: {roleArn: 'arn:aws:iam::123456789012:role/a'}");
    assert_eq!(world.replica_sets(ns, "roll"), 1);
    let rolled = |n: usize, what: &str| {
        wait_for(&format!("a new ReplicaSet after {what}"), Duration::from_secs(60), || {
            (world.replica_sets(ns, "roll") >= n).then_some(())
        });
        world.wait_ready(ns, "roll");
    };

    let edited = base.replacen("guard:\n", "guard:\n  defaultTier: premium\n", 1);
    world.apply(&policy_manifest(ns, "roll", &edited));
    rolled(2, "a config edit");

    let rotated = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: roll-keys, namespace: {ns}}}\nstringData:\n  audit-key: {}\n  salt: {}\n",
        random_hex(),
        random_hex()
    );
    world.apply(&rotated);
    rolled(3, "a rotated Secret");

    let role_b = edited.replace("role/a", "role/b");
    world.apply(&policy_manifest(ns, "roll", &role_b));
    rolled(4, "a changed roleArn");
    let sa = world.get(ns, "serviceaccount/roll-guard").expect("service account");
    assert_eq!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], "arn:aws:iam::123456789012:role/b");

    // Resizing is not a config change: no new ReplicaSet, and the new pods learn the
    // fleet size from the ConfigMap.
    world.apply(&policy_manifest(ns, "roll", &format!("{role_b}deployment: {{replicas: 4}}\n")));
    wait_for("the fleet size in the ConfigMap", Duration::from_secs(30), || {
        let cm = world.get(ns, "configmap/roll-guard")?;
        (cm["data"]["fleet-size"] == "4").then_some(())
    });
    world.wait_ready(ns, "roll");
    assert_eq!(world.replica_sets(ns, "roll"), 4, "resizing rolled the pods");

    // Autoscaling on: the fleet never shrinks below its current 4 pods.
    let autoscaled = format!("{role_b}deployment: {{replicas: 4}}\nautoscaling: {{minReplicas: 2, maxReplicas: 10}}\n");
    world.apply(&policy_manifest(ns, "roll", &autoscaled));
    let started = Instant::now();
    let mut hpa_seen = false;
    while started.elapsed() < Duration::from_secs(8) {
        let d = world.get(ns, "deployment/roll-guard").expect("deployment");
        let replicas = d["spec"]["replicas"].as_i64().expect("replicas");
        assert!(replicas >= 4, "switching autoscaling on dropped the Deployment to {replicas} replicas");
        hpa_seen |= world.get(ns, "hpa/roll-guard").is_some();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(hpa_seen, "the HorizontalPodAutoscaler was created");
    let d = world.get(ns, "deployment/roll-guard --show-managed-fields").expect("deployment");
    let managers: Vec<&str> =
        d["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|m| m["manager"].as_str()).collect();
    assert!(managers.contains(&"godel-operator"), "{managers:?}");
}

fn failures(world: &World) {
    let ns = "e2e-failures";
    let good = world.ready_policy(ns, "fail", "");
    let fleet = || {
        let d = world.get(ns, "deployment/fail-guard").expect("deployment");
        (d["metadata"]["resourceVersion"].clone(), world.replica_sets(ns, "fail"))
    };
    let running = fleet();

    let cases = [
        (
            good.replacen(
                "guard:\n",
                "guard:\n  traps: {regex: {rules: [{name: broken-rule, pattern: '(unclosed'}]}}\n",
                1,
            ),
            "InvalidGuardConfig",
            "broken-rule",
        ),
        (keyed_spec("no-such-secret", ""), "SecretNotFound", "no-such-secret"),
        (
            format!("{good}deployment: {{resources: {{requests: {{cpu: lots}}}}}}\n"),
            "ApplyRejected",
            "Deployment fail-guard",
        ),
        // Two Secrets on one path: the API server's typed patch would refuse it with a
        // 500; the policy check names it first.
        (format!("{good}  - {{name: fail-keys, mountPath: /etc/godel/keys}}\n"), "InvalidSecrets", "another Secret"),
        (good.replace("mountPath: /etc/godel/keys", "mountPath: /etc/godel"), "InvalidSecrets", "config directory"),
        (
            good.replace("key: {file: {path: /etc/godel/keys/audit-key}}", "key: {env: {}}"),
            "InvalidKeys",
            "env is refused",
        ),
        (
            good.replace("salt: {file: {path: /etc/godel/keys/salt}}", "salt: {file: {path: /tmp/salt}}"),
            "InvalidKeys",
            "no mounted Secret",
        ),
    ];
    for (spec, reason, needle) in cases {
        world.apply(&policy_manifest(ns, "fail", &spec));
        let (got, message) = world.wait_condition(ns, "fail", "Degraded", "True", Duration::from_secs(30));
        assert_eq!(got, reason, "{message}");
        assert!(message.contains(needle), "Degraded message lacks {needle}: {message}");
        let (ready, ready_reason, _) = world.condition(ns, "fail", "Ready").expect("Ready");
        assert_eq!((ready.as_str(), ready_reason.as_str()), ("False", reason));
        std::thread::sleep(Duration::from_secs(2));
        let events = world.events(ns, "fail", reason);
        assert_eq!(events.len(), 1, "one {reason} Event: {events:?}");
        assert_eq!(events[0]["type"], "Warning");
        assert_eq!(fleet(), running, "the running fleet was touched ({reason})");
    }
    world.apply(&policy_manifest(ns, "fail", &good));
    world.wait_ready(ns, "fail");
    let (_, reason, _) = world.condition(ns, "fail", "Degraded").expect("Degraded");
    assert_eq!(reason, "AsExpected");

    guards_that_cannot_start(world, ns, &good);
}

/// Guards that cannot start (a key file the Secret does not hold) are pods that are not
/// ready: the policy is not Ready and the old guards keep serving.
fn guards_that_cannot_start(world: &World, ns: &str, good: &str) {
    let ready_replicas =
        || world.get(ns, "deployment/fail-guard").expect("deployment")["status"]["readyReplicas"].clone();
    let serving = ready_replicas();
    let broken = good.replace("/etc/godel/keys/salt", "/etc/godel/keys/no-such-salt");
    world.apply(&policy_manifest(ns, "fail", &broken));
    world.wait_condition(ns, "fail", "Ready", "False", Duration::from_secs(30));
    wait_for("a new guard pod that is not ready", Duration::from_secs(30), || {
        let pods = world.get(ns, "pods -l app.kubernetes.io/instance=fail")?;
        pods["items"]
            .as_array()?
            .iter()
            .any(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["conditions"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "False"))
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let (ready, reason, message) = world.condition(ns, "fail", "Ready").expect("Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "RollingOut"), "{message}");
    assert_eq!(ready_replicas(), serving, "the old guards keep serving");
    world.apply(&policy_manifest(ns, "fail", good));
    world.wait_ready(ns, "fail");
}

/// What someone changes by hand on an object the operator owns is put back within
/// seconds, with a `DriftCorrected` Event naming it; then the world is steady again.
fn drift(world: &World) {
    let ns = "e2e-drift";
    world.ready_policy(ns, "drift", "deployment: {replicas: 2}");
    let kubectl = |args: &[&str]| {
        let mut all = vec!["-n", ns];
        all.extend(args);
        world.cluster.kubectl(&all)
    };
    let deployment = || world.get(ns, "deployment/drift-guard").expect("the Deployment");
    let container = |d: &Value| d["spec"]["template"]["spec"]["containers"][0].clone();
    let image = container(&deployment())["image"].clone();
    let args = container(&deployment())["args"].clone();
    let put_back = |what: &str, note: &str, check: &dyn Fn() -> bool| {
        wait_for(&format!("{what} put back"), Duration::from_secs(20), || check().then_some(()));
        wait_for(&format!("a DriftCorrected Event naming {note}"), Duration::from_secs(10), || {
            world
                .events(ns, "drift", "DriftCorrected")
                .iter()
                .any(|e| e["note"].as_str().is_some_and(|n| n.contains(note)))
                .then_some(())
        });
    };

    kubectl(&["scale", "deployment/drift-guard", "--replicas=1"]);
    put_back("a hand scale-down", "spec.replicas", &|| deployment()["spec"]["replicas"] == 2);
    kubectl(&["set", "image", "deployment/drift-guard", "guard=evil/image:latest"]);
    put_back("a hand image change", ".image", &|| container(&deployment())["image"] == image);
    kubectl(&[
        "patch",
        "deployment/drift-guard",
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--log-format=text"}]"#,
    ]);
    put_back("a hand edit of the args", ".args", &|| container(&deployment())["args"] == args);
    kubectl(&["delete", "service", "drift-guard", "--wait=true"]);
    put_back("a deleted Service", "Service drift-guard (deleted)", &|| world.get(ns, "service/drift-guard").is_some());

    // The controllers still move status while the put-back rollouts settle: what must
    // stay still is what the operator writes (its field manager's last change).
    world.wait_ready(ns, "drift");
    let before = world.operator_writes(ns, "drift");
    assert!(before.len() >= 5, "{before:?}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(world.operator_writes(ns, "drift"), before, "a put-back world is steady again");
}

fn garbage_collection(world: &World) {
    let ns = "e2e-gc";
    world.ready_policy(
        ns,
        "gc",
        "autoscaling: {maxReplicas: 4}\ningress: {host: gc.example.com, controller: nginx, requestsPerSecond: 5}",
    );
    assert!(world.owned_versions(ns, "gc").len() >= 8);
    // An owned object deleted by hand is noticed through the watches and put back at
    // once, not at the next periodic pass five minutes later.
    world.cluster.kubectl(&["-n", ns, "delete", "service/gc-guard"]);
    wait_for("the Service recreated", Duration::from_secs(15), || world.get(ns, "service/gc-guard").map(|_| ()));
    world.cluster.kubectl(&["-n", ns, "delete", "guardrailpolicy/gc", "--wait=true"]);
    wait_for("the garbage collector", Duration::from_secs(60), || {
        let left = world.owned_versions(ns, "gc");
        let pods = world.get(ns, "pods -l app.kubernetes.io/instance=gc").expect("pods");
        (left.is_empty() && world.replica_sets(ns, "gc") == 0 && pods["items"].as_array().is_some_and(Vec::is_empty))
            .then_some(())
    });
}

fn monitoring(world: &World) {
    let ns = "e2e-monitoring";
    world.ready_policy(ns, "mon", "monitoring: {labels: {release: kube-prometheus-stack}}");
    let installed = world.get("", "crd/prometheusrules.monitoring.coreos.com").is_some();
    if !installed {
        let (reason, message) =
            world.wait_condition(ns, "mon", "MonitoringConfigured", "False", Duration::from_secs(30));
        assert_eq!(reason, "PrometheusOperatorNotInstalled", "{message}");
        for file in ["monitoring.coreos.com_prometheusrules.yaml", "monitoring.coreos.com_servicemonitors.yaml"] {
            let path = world.cluster.bin.join("prometheus-operator-crds").join(file);
            world.cluster.kubectl(&["apply", "--server-side", "-f", &path.display().to_string()]);
        }
        world.wait_crd_established("prometheusrules.monitoring.coreos.com");
        world.wait_crd_established("servicemonitors.monitoring.coreos.com");
    }
    // Installing prometheus-operator later is noticed at the next pass; nudge it.
    world.cluster.kubectl(&["-n", ns, "annotate", "--overwrite", "guardrailpolicy/mon", "e2e/nudge=1"]);
    world.wait_condition(ns, "mon", "MonitoringConfigured", "True", Duration::from_secs(60));
    let rule = world.get(ns, "prometheusrule/mon-guard-rules").expect("the PrometheusRule exists");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert!(rule["spec"]["groups"][0]["rules"].as_array().is_some_and(|r| r.len() >= 3));
    let monitor = world.get(ns, "servicemonitor/mon-guard").expect("the ServiceMonitor exists");
    assert!(monitor["spec"]["endpoints"][0]["path"].as_str().is_some_and(|p| p == "/metrics"), "{monitor}");
}

fn leader_election(world: &World) {
    world.install();
    let leader = wait_for("a leader", Duration::from_secs(30), || world.leader());
    let lease_seconds =
        world.get("godel-system", &format!("lease/{LEASE}")).expect("lease")["spec"]["leaseDurationSeconds"]
            .as_u64()
            .expect("duration");

    // One renewal refused (the Role's binding gone for a moment) is retried, not fatal.
    let binding = world.cluster.kubectl(&[
        "-n",
        "godel-system",
        "get",
        "rolebinding/godel-operator-leader-election",
        "-o",
        "json",
    ]);
    world.cluster.kubectl(&["-n", "godel-system", "delete", "rolebinding/godel-operator-leader-election"]);
    std::thread::sleep(Duration::from_secs(4));
    let binding: Value = serde_json::from_str(&binding).expect("JSON");
    let restored = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "godel-operator-leader-election", "namespace": "godel-system"},
        "roleRef": binding["roleRef"], "subjects": binding["subjects"]});
    world.cluster.kubectl_stdin(&["apply", "-f", "-"], &restored.to_string());
    std::thread::sleep(Duration::from_secs(3));
    {
        let mut operators = world.operators();
        let current = operators.iter_mut().find(|o| o.identity == leader).expect("the leader is ours");
        assert!(current.log_text().contains("lease renewal failed"), "no renewal failed: the test proved nothing");
        assert!(current.running(), "one failed renewal stopped the leader:\n{}", current.log_text());
    }
    assert_eq!(world.leader().as_deref(), Some(leader.as_str()), "leadership moved after one failed renewal");

    // A crashed leader is replaced within the lease duration (plus one retry period).
    let killed = Instant::now();
    world.operators().iter_mut().find(|o| o.identity == leader).expect("leader").kill();
    let next =
        wait_for("another leader", Duration::from_secs(lease_seconds + 15), || world.leader().filter(|l| *l != leader));
    let took = killed.elapsed();
    // Expiry, then the candidate's next 2 s retry, with a little slack for a busy machine.
    assert!(took <= Duration::from_secs(lease_seconds + 2 + 3), "{next} took over after {took:?}");
    eprintln!("{next} took over {:.1} s after {leader} was killed", took.as_secs_f64());

    // The new leader reconciles: a fresh policy becomes Ready.
    world.ready_policy("e2e-leader", "after", "deployment: {replicas: 1}");
    world.start_operators();
}

/// The operators run as the ServiceAccount throughout, so every verb they use is proven
/// granted by the scenarios above; this checks, with the API server's own authorizer,
/// that the verbs they never use are not.
fn rbac(world: &World) {
    world.install();
    let can = |verb: &str, resource: &str, ns: &str| {
        let mut args = vec!["auth", "can-i", verb, "-n", ns, "--as", SERVICE_ACCOUNT];
        match resource.split_once('/') {
            Some((resource, sub)) => args.extend([resource, "--subresource", sub]),
            None => args.push(resource),
        }
        let out = world.cluster.kubectl_output(&args);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for (verb, resource) in [
        ("patch", "deployments.apps"),
        ("create", "deployments.apps"),
        ("delete", "horizontalpodautoscalers.autoscaling"),
        ("patch", "guardrailpolicies.guardrails.godel.dev/status"),
        ("watch", "secrets"),
        ("create", "events.events.k8s.io"),
    ] {
        assert!(can(verb, resource, "default"), "the operator needs {verb} {resource}");
    }
    for (verb, resource) in [
        ("update", "guardrailpolicies.guardrails.godel.dev"),
        ("patch", "guardrailpolicies.guardrails.godel.dev"),
        ("delete", "deployments.apps"),
        ("delete", "services"),
        ("delete", "serviceaccounts"),
        ("create", "secrets"),
        ("update", "secrets"),
        ("create", "pods"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ] {
        assert!(!can(verb, resource, "default"), "the operator must not {verb} {resource}");
    }
    assert!(can("update", "leases.coordination.k8s.io", "godel-system"));
    assert!(!can("update", "leases.coordination.k8s.io", "default"), "Leases only in its own namespace");
}

/// Kubernetes 1.30 (the preStop `sleep` action's first GA release) serves the CRD, with
/// its CEL rules inside that release's cost budget, and accepts the samples.
fn oldest_kubernetes(world: &World) {
    let oldest = Cluster::start_oldest();
    let keep = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        oldest.kubectl(&["apply", "--server-side", "-k", "config/crd"]);
        oldest.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/guardrailpolicies.guardrails.godel.dev",
        ]);
        oldest.kubectl(&["apply", "--server-side", "--validate=strict", "-f", "config/samples/"]);
        let out = oldest.kubectl_stdin_output(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            &policy_manifest(
                "default",
                "refused",
                "guard: {defaultTier: gold, tiers: [{name: free, ratePerSecond: 1, burst: 1}]}",
            ),
        );
        assert!(!out.status.success(), "1.30 accepted an invalid defaultTier");
        assert!(String::from_utf8_lossy(&out.stderr).contains("defaultTier must name one of the tiers"));
    }));
    if let Err(panic) = keep {
        let mut oldest = oldest;
        oldest.keep = true;
        world.failed.store(true, Ordering::SeqCst);
        std::panic::resume_unwind(panic);
    }
}

/// The Helm chart in place of the kustomize base: the base's operator objects deleted,
/// `helm install` of `charts/godel-guardrail` with its default values, and the operators,
/// running as the chart's ServiceAccount with the chart's RBAC, bring a new policy Ready
/// with a real guard behind its pod.
fn helm_chart(world: &World) {
    world.install();
    world.operators().clear();
    // The CRD stays (Helm leaves an existing CRD alone, as it never deletes its own).
    world.cluster.kubectl(&["delete", "-k", "config/operator", "--wait=true", "--timeout=120s"]);
    let helm = |args: &[&str]| {
        let out = std::process::Command::new(world.cluster.bin.join("helm"))
            .args(args)
            .env("KUBECONFIG", &world.cluster.kubeconfig)
            .current_dir(repo())
            .output()
            .expect("helm runs (scripts/control-plane.sh builds it)");
        assert!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    helm(&["install", "godel-guardrail", "charts/godel-guardrail", "--namespace", "default"]);
    let status: Value = serde_json::from_str(&helm(&["status", "godel-guardrail", "-n", "default", "-o", "json"]))
        .expect("helm status prints JSON");
    assert_eq!(status["info"]["status"], "deployed", "{status}");
    let deployment = world.get("godel-system", "deployment/godel-operator").expect("the chart's Deployment");
    assert_eq!(deployment["metadata"]["annotations"]["meta.helm.sh/release-name"], "godel-guardrail");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let namespace = world.get("", "namespace/godel-system").expect("the chart's Namespace");
    assert_eq!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");

    world.start_operators();
    let leader = wait_for("a leader", Duration::from_secs(30), || world.leader());
    assert!(["operator-a", "operator-b"].contains(&leader.as_str()), "leader {leader}");
    world.ready_policy("e2e-helm", "charted", "deployment: {replicas: 1}");
    assert_eq!(world.guard_decides("e2e-helm", "charted", KEY_PROMPT), "block");
}
