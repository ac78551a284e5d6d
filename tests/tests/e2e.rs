//! End to end against a real cluster: opt-in, because no Kubernetes API server can be
//! had on the machines where the suite usually runs. Run it with
//! `GODEL_E2E=1 KUBECONFIG=... cargo test -p godel-tests --test e2e -- --ignored`
//! against a disposable cluster (kind, k3d, a test EKS): it applies the CRD, runs the
//! operator in-process, applies a sample and waits for it to be Ready.

use std::process::Command;
use std::time::{Duration, Instant};

use godel_tests::repo;

fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl").args(args).output().expect("kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
#[ignore = "needs a real cluster: set GODEL_E2E=1 and KUBECONFIG, then run with -- --ignored"]
fn policy_becomes_ready_is_listed_and_cleans_up() {
    assert_eq!(std::env::var("GODEL_E2E").as_deref(), Ok("1"), "GODEL_E2E=1 confirms the cluster is disposable");
    let ns = format!("godel-e2e-{}", std::process::id());
    kubectl(&["apply", "--server-side", "-f", repo().join("config/crd/guardrailpolicy.yaml").to_str().unwrap()]);
    kubectl(&["create", "namespace", &ns]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.spawn(async {
        let client = kube::Client::try_default().await.expect("KUBECONFIG");
        let ctx = std::sync::Arc::new(godel_operator::context::Context::new(client.clone(), Default::default()));
        godel_operator::controller::run(client, ctx).await;
    });

    let image = std::env::var("GODEL_E2E_IMAGE").unwrap_or_else(|_| godel_crds::DEFAULT_IMAGE.to_owned());
    let policy = format!(
        "apiVersion: guardrails.godel.dev/v1alpha1\nkind: GuardrailPolicy\nmetadata: {{name: e2e, namespace: {ns}}}\n\
         spec:\n  deployment: {{replicas: 1, image: \"{image}\"}}\n  guard:\n    audit:\n      key: {{file: {{path: /etc/godel/keys/key}}}}\n      salt: {{file: {{path: /etc/godel/keys/salt}}}}\n  secrets: [{{name: e2e-keys, mountPath: /etc/godel/keys}}]\n"
    );
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let salt = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    kubectl(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "e2e-keys",
        &format!("--from-literal=key={key}"),
        &format!("--from-literal=salt={salt}"),
    ]);
    let file = std::env::temp_dir().join(format!("{ns}.yaml"));
    std::fs::write(&file, policy).unwrap();
    kubectl(&["apply", "-f", file.to_str().unwrap()]);

    wait_until("Ready", Duration::from_secs(300), || {
        kubectl(&[
            "-n",
            &ns,
            "get",
            "guardrails",
            "e2e",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True"
    });
    let listing = kubectl(&["-n", &ns, "get", "guardrails"]);
    for column in ["NAME", "READY", "REPLICAS", "MODE", "AGE", "e2e", "True", "1/1", "local"] {
        assert!(listing.contains(column), "`kubectl get guardrails` lacks {column}:\n{listing}");
    }

    kubectl(&["-n", &ns, "delete", "guardrails", "e2e", "--wait=true"]);
    wait_until("garbage collection", Duration::from_secs(120), || {
        kubectl(&[
            "-n",
            &ns,
            "get",
            "deployments,services,configmaps",
            "-l",
            "app.kubernetes.io/instance=e2e",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
    });
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
