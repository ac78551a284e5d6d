//! The Helm chart (`charts/godel-guardrail`) against the kustomize base it mirrors: with
//! its default values it renders exactly the objects of `config/default`, `helm lint`
//! finds nothing, and its values change what they say. `helm` is built from its Go
//! module by `scripts/control-plane.sh`, like the rest of the control plane.

use std::collections::BTreeMap;

use godel_tests::{repo, run, yaml_documents};
use serde_json::{Value, json};

const CHART: &str = "charts/godel-guardrail";

fn chart() -> String {
    repo().join(CHART).display().to_string()
}

/// `value` with whole floats as integers: a file Helm passes as written keeps the CRD's
/// `2147483647.0`, which `kubectl kustomize` prints as `2147483647`; the API server reads
/// both as the same number.
fn whole_numbers(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect()),
        other => other,
    }
}

/// The objects, keyed by kind, namespace and name.
fn by_identity(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| {
            let meta = &o["metadata"];
            let key = format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap(),
                meta["namespace"].as_str().unwrap_or(""),
                meta["name"].as_str().unwrap()
            );
            (key, whole_numbers(o))
        })
        .collect()
}

fn helm_template(extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "godel-guardrail", chart.as_str(), "--include-crds"];
    args.extend_from_slice(extra);
    yaml_documents(&String::from_utf8(run("helm", &args).stdout).unwrap())
}

#[test]
fn the_default_values_render_the_kustomize_base() {
    let kustomize = run("kubectl", &["kustomize", repo().join("config/default").to_str().unwrap()]);
    let expected = by_identity(yaml_documents(&String::from_utf8(kustomize.stdout).unwrap()));
    let rendered = by_identity(helm_template(&[]));
    assert_eq!(rendered.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (identity, object) in &expected {
        assert_eq!(&rendered[identity], object, "{identity} differs between the chart and config/default");
    }
}

#[test]
fn helm_lint_is_clean() {
    for values in [&[][..], &["--set", "metrics.serviceMonitor.enabled=true"][..]] {
        let mut args = vec!["lint", "--strict"];
        let chart = chart();
        args.push(&chart);
        args.extend_from_slice(values);
        let out = String::from_utf8(run("helm", &args).stdout).unwrap();
        assert!(out.contains("0 chart(s) failed") && !out.contains("[WARNING]"), "{out}");
    }
}

#[test]
fn values_change_what_they_say() {
    let objects = by_identity(helm_template(&[
        "--set",
        "namespace.name=ops,replicas=3,image.tag=9.9.9,logLevel=debug,nodeSelector.zone=eu-1a",
        "--set",
        "metrics.serviceMonitor.enabled=true,leaderElection.leaseName=guard-leader,metrics.port=9100",
        "--set",
        "tracing.otlpEndpoint=http://otel-collector.observability:4318",
    ]));
    let deployment = &objects["Deployment ops/godel-operator"];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["image"], "ghcr.io/godel-guardrail/godel-operator:9.9.9");
    assert_eq!(pod["nodeSelector"], json!({"zone": "eu-1a"}));
    assert_eq!(container["args"], json!(["run", "--lease-name", "guard-leader"]));
    assert_eq!(container["ports"][0]["containerPort"], 9100);
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(
        env,
        [
            ("RUST_LOG", "debug"),
            ("GODEL_OPERATOR_LISTEN", "0.0.0.0:9100"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.observability:4318")
        ]
    );
    assert_eq!(objects["ClusterRoleBinding /godel-operator"]["subjects"][0]["namespace"], "ops");
    assert!(objects.contains_key("Namespace /ops") && objects.contains_key("ServiceMonitor ops/godel-operator"));
    assert_eq!(objects["Service ops/godel-operator-metrics"]["spec"]["ports"][0]["port"], 9100);

    // Refused with a clear error rather than rendered broken.
    let chart = chart();
    let out = std::process::Command::new("helm")
        .args(["template", "g", &chart, "--set", "metrics.serviceMonitor.enabled=true,metrics.service.enabled=false"])
        .output()
        .expect("helm runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs metrics.service.enabled"));
}
