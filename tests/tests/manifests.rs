//! Every object the project ships or the operator can produce, checked by the tools that
//! would reject it in real life: `kubectl kustomize` for the bases, `kubernetes-validate
//! --strict` for built-in kinds, the CRD's own openAPIV3Schema for GuardrailPolicies,
//! prometheus-operator's schemas for PrometheusRule and ServiceMonitor, and `promtool`
//! for the alert rules.

use std::path::{Path, PathBuf};

use godel_crds::GuardrailPolicy;
use godel_tests::{repo, run, temp_dir, yaml_documents};
use serde_json::Value;

/// Kubernetes minor release the manifests are validated against.
const KUBERNETES: &str = "1.34.0";
const BASES: [&str; 6] = ["crd", "operator", "default", "prometheus", "grafana", "argocd"];

fn kustomize(base: &str) -> Vec<Value> {
    let dir = repo().join("config").join(base);
    let out = run("kubectl", &["kustomize", dir.to_str().unwrap()]);
    yaml_documents(&String::from_utf8(out.stdout).unwrap())
}

/// Every object in `config/samples`, a plain directory users `kubectl apply -f`.
fn sample_objects() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("config/samples"))
        .expect("config/samples")
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    files.iter().flat_map(|f| yaml_documents(&std::fs::read_to_string(f).expect("sample"))).collect()
}

fn sample_policies() -> Vec<Value> {
    sample_objects().into_iter().filter(|o| o["kind"] == "GuardrailPolicy").collect()
}

fn samples() -> Vec<GuardrailPolicy> {
    sample_policies().into_iter().map(|v| serde_json::from_value(v).expect("a sample is a GuardrailPolicy")).collect()
}

fn is_builtin(object: &Value) -> bool {
    let api = object["apiVersion"].as_str().unwrap_or_default();
    !api.contains("godel.dev") && !api.contains("monitoring.coreos.com") && !api.contains("argoproj.io")
}

fn write_all(dir: &Path, objects: &[Value]) -> Vec<PathBuf> {
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = dir.join(format!("{i:03}-{}.json", o["kind"].as_str().unwrap_or("unknown")));
            std::fs::write(&path, serde_json::to_vec_pretty(o).unwrap()).unwrap();
            path
        })
        .collect()
}

/// Everything the operator would apply for every sample, monitoring included.
fn operator_output() -> Vec<Value> {
    samples()
        .iter()
        .flat_map(|policy| {
            godel_operator::validate::spec(policy)
                .unwrap_or_else(|e| panic!("sample {:?}: {e:?}", policy.metadata.name));
            godel_operator::resources::plan(policy, "none", true).unwrap().manifests()
        })
        .collect()
}

#[test]
fn every_kustomize_base_builds() {
    for base in BASES {
        assert!(!kustomize(base).is_empty(), "config/{base} renders nothing");
    }
}

/// Argo CD syncs `config/default` with pruning on; pruning the CRD would delete every
/// policy and, through owner references, every guard fleet.
#[test]
fn argo_cd_never_prunes_the_crd() {
    let objects = kustomize("default");
    let crd = objects.iter().find(|o| o["kind"] == "CustomResourceDefinition").expect("the CRD");
    assert_eq!(crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"], "Prune=false");
    let others = objects.iter().filter(|o| o["kind"] != "CustomResourceDefinition");
    for o in others {
        assert!(o["metadata"]["annotations"]["argocd.argoproj.io/sync-options"].is_null(), "{}", o["kind"]);
    }
}

#[test]
fn builtin_kinds_pass_kubernetes_validate_strict() {
    let mut objects: Vec<Value> = BASES.iter().flat_map(|b| kustomize(b)).filter(is_builtin).collect();
    objects.extend(sample_objects().into_iter().filter(is_builtin));
    objects.extend(operator_output().into_iter().filter(is_builtin));
    let kinds: std::collections::BTreeSet<String> =
        objects.iter().map(|o| o["kind"].as_str().unwrap().to_owned()).collect();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "CustomResourceDefinition",
        "ClusterRole",
    ] {
        assert!(kinds.contains(kind), "{kind} was not validated: {kinds:?}");
    }
    let dir = temp_dir("kubernetes-validate");
    let files = write_all(&dir, &objects);
    let mut args = vec!["--strict", "-k", KUBERNETES, "--no-warn"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = run("kubernetes-validate", &args);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(report.matches("INFO").count(), files.len(), "every file reported valid:\n{report}");
}

#[test]
fn kubernetes_validate_rejects_a_broken_deployment() {
    let mut deployment = operator_output().into_iter().find(|o| o["kind"] == "Deployment").unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5.into();
    let dir = temp_dir("kubernetes-validate-broken");
    let files = write_all(&dir, &[deployment]);
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES, files[0].to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a typo'd field must fail strict validation");
}

/// Validates instances against the CRD's openAPIV3Schema with Python's jsonschema.
fn validate_against_crd(objects: &[Value]) -> Result<(), String> {
    let crd = serde_json::to_value(godel_crds::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let dir = temp_dir("crd-schema");
    std::fs::write(dir.join("schema.json"), schema.to_string()).unwrap();
    std::fs::write(dir.join("objects.json"), Value::Array(objects.to_vec()).to_string()).unwrap();
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        errors = 0\n\
        for o in json.load(open(sys.argv[2])):\n\
        \x20   for e in jsonschema.Draft7Validator(schema).iter_errors(o):\n\
        \x20       errors += 1; print(o['metadata']['name'], list(e.absolute_path), e.message)\n\
        sys.exit(1 if errors else 0)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, dir.join("schema.json").to_str().unwrap(), dir.join("objects.json").to_str().unwrap()])
        .output()
        .expect("python3 with jsonschema (installed with kubernetes-validate)");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn samples_match_the_crd_schema() {
    let samples = sample_policies();
    assert!(samples.len() >= 2);
    validate_against_crd(&samples).unwrap();
    let mut broken = samples[1].clone();
    broken["spec"]["guard"]["tiers"][0]["burst"] = "lots".into();
    let err = validate_against_crd(&[broken]).unwrap_err();
    assert!(err.contains("burst"), "{err}");
}

#[test]
fn monitoring_objects_pass_prometheus_operator_schemas() {
    let mut objects: Vec<Value> =
        operator_output().into_iter().filter(|o| o["apiVersion"] == "monitoring.coreos.com/v1").collect();
    objects.extend(kustomize("prometheus"));
    assert!(
        objects.iter().any(|o| o["kind"] == "ServiceMonitor") && objects.iter().any(|o| o["kind"] == "PrometheusRule")
    );
    let dir = temp_dir("prometheus-operator");
    let files = write_all(&dir, &objects);
    let script = repo().join("tests/validate/prometheus-operator.mjs");
    let mut args = vec![script.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    run("node", &args);
    // And the validator does reject a broken one.
    let mut broken = objects[0].clone();
    broken["spec"]["groups"][0]["rules"][0]["for"] = "a while".into();
    let broken_dir = temp_dir("prometheus-operator-broken");
    let broken_files = write_all(&broken_dir, &[broken]);
    let out = std::process::Command::new("node")
        .args([script.to_str().unwrap(), broken_files[0].to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let rules = repo().join("config/prometheus/godel-rules.yaml");
    run("promtool", &["check", "rules", rules.to_str().unwrap()]);
    run("promtool", &["test", "rules", repo().join("config/prometheus/godel-rules.test.yaml").to_str().unwrap()]);
    // The rules the operator writes for each sample policy check too.
    let dir = temp_dir("promtool");
    for (i, rule) in operator_output().iter().filter(|o| o["kind"] == "PrometheusRule").enumerate() {
        let path = dir.join(format!("rules-{i}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
        run("promtool", &["check", "rules", path.to_str().unwrap()]);
    }
}

/// The ClusterRole grants, for each kind the operator owns, exactly what it does with it
/// (read, apply, watch when watched, delete when removable), and every object the
/// operator renders is of an owned kind.
#[test]
fn rbac_and_rendering_follow_the_owned_kinds() {
    use godel_operator::resources::{OWNED_KINDS, OwnedKind};
    use std::collections::BTreeSet;
    let objects = kustomize("operator");
    let role = objects.iter().find(|o| o["kind"] == "ClusterRole").expect("the operator's ClusterRole");
    let granted = |group: &str, resource: &str| -> BTreeSet<String> {
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["apiGroups"].as_array().is_some_and(|g| g.iter().any(|g| g == group))
                    && r["resources"].as_array().is_some_and(|x| x.iter().any(|x| x == resource))
            })
            .flat_map(|r| r["verbs"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)))
            .collect()
    };
    for kind in OWNED_KINDS {
        let mut needed: BTreeSet<String> = ["get", "create", "patch"].map(String::from).into();
        if kind.watched {
            needed.extend(["list", "watch"].map(String::from));
        }
        if kind.removable {
            needed.insert("delete".into());
        }
        assert_eq!(granted(kind.api_group, kind.resource), needed, "verbs on {}", kind.resource);
    }
    let full: GuardrailPolicy = serde_yaml::from_str(
        "apiVersion: guardrails.godel.dev/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: p, namespace: n}\n\
         spec: {autoscaling: {maxReplicas: 5}, ingress: {host: g.example.com, controller: nginx, requestsPerSecond: 5}}\n",
    )
    .expect("policy");
    let rendered: BTreeSet<String> = godel_operator::resources::plan(&full, "none", true)
        .expect("renders")
        .apply
        .iter()
        .map(|owned| {
            let kind = OwnedKind::of(&owned.resource).unwrap_or_else(|| panic!("{} is not owned", owned.describe()));
            assert_eq!(owned.object.types.as_ref().map(|t| t.kind.as_str()), Some(kind.kind), "the object's own kind");
            kind.kind.to_owned()
        })
        .collect();
    let owned: BTreeSet<String> = OWNED_KINDS.iter().map(|k| k.kind.to_owned()).collect();
    assert_eq!(rendered, owned, "what the operator renders and what it owns");
    let bare: GuardrailPolicy = serde_yaml::from_str(
        "apiVersion: guardrails.godel.dev/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: p, namespace: n}\n\
         spec: {monitoring: {dashboard: false}}\n",
    )
    .expect("policy");
    let absent: BTreeSet<(String, bool)> = godel_operator::resources::plan(&bare, "none", true)
        .expect("renders")
        .absent
        .iter()
        .map(|absent| {
            let removable = OwnedKind::of(&absent.resource).is_some_and(|kind| kind.removable);
            (format!("{} {}", absent.resource.kind, absent.name), removable)
        })
        .collect();
    let expected: BTreeSet<(String, bool)> =
        [("HorizontalPodAutoscaler p-guard", true), ("ConfigMap p-guard-dashboard", true), ("Ingress p-guard", true)]
            .map(|(what, removable)| (what.to_owned(), removable))
            .into();
    assert_eq!(absent, expected, "what a bare policy deletes, each of a kind the operator may delete");
}
