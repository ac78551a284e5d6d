//! Alerts and scraping for a guard fleet (prometheus-operator kinds). The alert rules are
//! one function, so the PrometheusRule the operator writes and the plain rules file in
//! `config/prometheus` cannot drift apart.

use godel_crds::{DEFAULT_CPU_REQUEST, GuardrailPolicy};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use super::{guard_name, metadata, selector_labels};

const RUNBOOK: &str = "https://github.com/godel-guardrail/godel-guardrail/blob/main/docs/RUNBOOK.md";

pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "PrometheusRule".into(),
        plural: "prometheusrules".into(),
    }
}

pub fn service_monitor_resource() -> ApiResource {
    ApiResource { kind: "ServiceMonitor".into(), plural: "servicemonitors".into(), ..prometheus_rule_resource() }
}

/// CPU cores of a Kubernetes quantity such as `100m`, `0.5` or `2`.
fn cores(q: &Quantity) -> Option<f64> {
    match q.0.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => q.0.parse().ok(),
    }
}

struct Alert {
    name: &'static str,
    expr: String,
    for_: &'static str,
    severity: &'static str,
    priority: &'static str,
    summary: &'static str,
    description: String,
}

/// The rule groups: P0 unhealthy and target down, P1 security debt rising, P2 CPU near
/// the request. `selector` picks the guard's series, e.g. `job="payments-guard"`.
pub fn alert_groups(selector: &str, debt_threshold: f64, cpu_request_cores: f64) -> Value {
    // Millicore precision, so rules read `> 0.08`, not `> 0.08000000000000002`.
    let cpu_limit = (cpu_request_cores * 800.0).round() / 1000.0;
    let alerts = [
        Alert {
            name: "GodelGuardUnhealthy",
            expr: format!("godel_health_status{{{selector}}} == 0"),
            for_: "1m",
            severity: "critical",
            priority: "P0",
            summary: "Guard {{ $labels.instance }} reports itself unhealthy",
            description: "godel_health_status is 0: the pod is draining or cannot decide (Redis unreachable with failureMode closed).".into(),
        },
        Alert {
            name: "GodelGuardTargetDown",
            expr: format!("up{{{selector}}} == 0 or absent(up{{{selector}}})"),
            for_: "2m",
            severity: "critical",
            priority: "P0",
            summary: "A guard scrape target is down or no guard is scraped at all",
            description: "A dead guard reports no health; this catches what GodelGuardUnhealthy cannot.".into(),
        },
        Alert {
            name: "GodelSecurityDebtRising",
            expr: format!("sum(rate(godel_security_debt_total{{{selector}}}[5m])) > {debt_threshold}"),
            for_: "5m",
            severity: "warning",
            priority: "P1",
            summary: "Security debt grows faster than {{ $value | humanize }} points/s",
            description: "Traps are firing at an unusual rate: a campaign of injections or leaked secrets.".into(),
        },
        Alert {
            name: "GodelGuardCPUHigh",
            expr: format!("rate(process_cpu_seconds_total{{{selector}}}[5m]) > {cpu_limit}"),
            for_: "15m",
            severity: "info",
            priority: "P2",
            summary: "Guard {{ $labels.instance }} uses more than 80% of its CPU request",
            description: format!("Above {cpu_limit} cores for 15 minutes: scale out or raise the request."),
        },
    ];
    let rules: Vec<Value> = alerts
        .into_iter()
        .map(|a| {
            json!({
                "alert": a.name,
                "expr": a.expr,
                "for": a.for_,
                "labels": {"severity": a.severity, "priority": a.priority},
                "annotations": {
                    "summary": a.summary,
                    "description": a.description,
                    "runbook_url": format!("{RUNBOOK}#{}", a.name.to_lowercase()),
                },
            })
        })
        .collect();
    json!([{ "name": "godel-guard", "rules": rules }])
}

/// The CPU request of a guard whose spec sets none.
pub fn default_cpu_request_cores() -> f64 {
    cores(&Quantity(DEFAULT_CPU_REQUEST.to_owned())).expect("the default request is a quantity")
}

fn cpu_request(policy: &GuardrailPolicy) -> f64 {
    let resources = policy.spec.deployment.resources();
    resources.requests.as_ref().and_then(|r| r.get("cpu")).and_then(cores).unwrap_or_else(default_cpu_request_cores)
}

fn monitoring_object(policy: &GuardrailPolicy, resource: &ApiResource, name: String, spec: Value) -> DynamicObject {
    let mut object = DynamicObject::new(&name, resource);
    let mut meta = metadata(policy, name);
    if let Some(labels) = meta.labels.as_mut() {
        labels.extend(policy.spec.monitoring.labels.clone());
    }
    object.metadata = meta;
    object.data = json!({ "spec": spec });
    object
}

pub fn prometheus_rule(policy: &GuardrailPolicy) -> DynamicObject {
    let selector = format!(
        "job=\"{}\", namespace=\"{}\"",
        guard_name(policy),
        policy.metadata.namespace.as_deref().unwrap_or("default")
    );
    let groups = alert_groups(&selector, policy.spec.monitoring.debt_alert_threshold(), cpu_request(policy));
    monitoring_object(
        policy,
        &prometheus_rule_resource(),
        format!("{}-rules", guard_name(policy)),
        json!({ "groups": groups }),
    )
}

pub fn service_monitor(policy: &GuardrailPolicy) -> DynamicObject {
    let spec = json!({
        "selector": {"matchLabels": selector_labels(policy)},
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
    });
    monitoring_object(policy, &service_monitor_resource(), guard_name(policy), spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn rules_carry_policy_labels_threshold_and_cpu_request() {
        let p = fixtures::from_yaml(
            "monitoring: {labels: {release: kube-prometheus-stack}, debtAlertThreshold: 25}\n\
             deployment: {resources: {requests: {cpu: 500m}}}",
        );
        let rule = prometheus_rule(&p);
        assert_eq!(rule.metadata.labels.as_ref().unwrap()["release"], "kube-prometheus-stack");
        let text = rule.data.to_string();
        assert!(
            text.contains(
                "rate(godel_security_debt_total{job=\\\"payments-guard\\\", namespace=\\\"shop\\\"}[5m])) > 25"
            ),
            "{text}"
        );
        assert!(text.contains("> 0.4"), "80% of a 500m request: {text}");
        for severity in ["critical", "warning", "info"] {
            assert!(text.contains(severity));
        }
        assert!(text.matches("runbook_url").count() == 4);
    }

    #[test]
    fn quantities() {
        assert_eq!(cores(&Quantity("250m".into())), Some(0.25));
        assert_eq!(cores(&Quantity("2".into())), Some(2.0));
    }
}
