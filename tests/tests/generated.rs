//! Files in `config/` that are generated from code must match their generator, so what
//! Argo CD syncs is what the code says.

use godel_crds::DEFAULT_DEBT_ALERT_THRESHOLD;
use godel_operator::resources::{DASHBOARD_JSON, alert_groups, default_cpu_request_cores};
use godel_tests::{check_generated, repo};
use serde_json::json;

/// The plain rules file serves installs without the operator: the job is the guard's
/// scrape job, the CPU request the default 100m, the debt threshold the default.
fn plain_rules() -> serde_json::Value {
    json!({ "groups": alert_groups("job=\"godel-guard\"", DEFAULT_DEBT_ALERT_THRESHOLD, default_cpu_request_cores()) })
}

#[test]
fn crd_for_kustomize() {
    check_generated("config/crd/guardrailpolicy.yaml", &godel_crds::crd_yaml());
}

/// Helm installs `crds/` once and never deletes it; Argo CD, syncing the chart, must not
/// prune it either: the annotation the kustomize base adds.
#[test]
fn crd_for_helm() {
    let crd = godel_crds::crd_yaml();
    let annotated =
        crd.replacen("metadata:\n", "metadata:\n  annotations:\n    argocd.argoproj.io/sync-options: Prune=false\n", 1);
    assert_ne!(annotated, crd, "the CRD has metadata");
    let header = "# Generated from crds/src (the GuardrailPolicy types); do not edit.\n";
    check_generated("charts/godel-guardrail/crds/guardrailpolicy.yaml", &format!("{header}{annotated}"));
}

#[test]
fn prometheus_rules_file_and_prometheus_rule() {
    let header = "# Generated from operator/src/resources/monitoring.rs (alert_groups); do not edit.\n";
    check_generated(
        "config/prometheus/godel-rules.yaml",
        &format!("{header}{}", serde_yaml::to_string(&plain_rules()).unwrap()),
    );
    let rule = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "godel-guard", "labels": {"release": "kube-prometheus-stack"}},
        "spec": plain_rules(),
    });
    check_generated(
        "config/prometheus/prometheusrule.yaml",
        &format!("{header}{}", serde_yaml::to_string(&rule).unwrap()),
    );
}

#[test]
fn grafana_dashboard_config_map() {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "godel-guardrail-dashboard", "labels": {"grafana_dashboard": "1"}},
        "data": {"godel-guard.json": DASHBOARD_JSON},
    });
    let header = "# Generated from operator/src/resources/dashboard.json; do not edit.\n";
    check_generated(
        "config/grafana/dashboard-configmap.yaml",
        &format!("{header}{}", serde_yaml::to_string(&cm).unwrap()),
    );
}

#[test]
fn argocd_health_check_patch() {
    let lua = std::fs::read_to_string(repo().join("config/argocd/health.lua")).unwrap();
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": "argocd"},
        "data": {"resource.customizations.health.guardrails.godel.dev_GuardrailPolicy": lua},
    });
    let header = "# Merge into Argo CD's argocd-cm (e.g. as a patch of your Argo CD install).\n\
                  # Generated from config/argocd/health.lua; do not edit.\n";
    check_generated(
        "config/argocd/argocd-cm-patch.yaml",
        &format!("{header}{}", serde_yaml::to_string(&patch).unwrap()),
    );
}
