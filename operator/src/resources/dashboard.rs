use std::collections::BTreeMap;

use godel_crds::GuardrailPolicy;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::{content_hash, guard_name, metadata};

/// The Grafana dashboard, also shipped as `config/grafana` for installs without the
/// operator. Grafana's sidecar loads ConfigMaps labelled `grafana_dashboard: "1"`.
pub const DASHBOARD_JSON: &str = include_str!("dashboard.json");

/// Name of the dashboard ConfigMap (also what the operator deletes when it is switched off).
pub fn dashboard_name(policy: &GuardrailPolicy) -> String {
    format!("{}-dashboard", guard_name(policy))
}

pub fn dashboard_config_map(policy: &GuardrailPolicy) -> Option<ConfigMap> {
    if !policy.spec.monitoring.dashboard() {
        return None;
    }
    let mut meta = metadata(policy, dashboard_name(policy));
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert("grafana_dashboard".into(), "1".into());
    }
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    // Grafana's sidecar writes every ConfigMap's files into one folder and keys
    // dashboards by uid: both must be unique per policy, or policies overwrite each other.
    let mut dashboard: serde_json::Value = serde_json::from_str(DASHBOARD_JSON).ok()?;
    dashboard["uid"] = format!("godel-{}", content_hash(format!("{ns}/{name}").as_bytes())).into();
    dashboard["title"] = format!("Godel Guardrail: {ns}/{name}").into();
    Some(ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(format!("godel-guard-{ns}-{name}.json"), dashboard.to_string())])),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn dashboard_is_labelled_valid_json_using_contract_metrics() {
        let cm = dashboard_config_map(&fixtures::from_yaml("{}")).unwrap();
        assert_eq!(cm.metadata.labels.unwrap()["grafana_dashboard"], "1");
        let json: serde_json::Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
        let text = json.to_string();
        for metric in [
            "godel_requests_total",
            "godel_request_duration_seconds_bucket",
            "godel_trap_findings_total",
            "godel_security_debt_total",
            "godel_health_status",
            "godel_ratelimit_fallback_active",
        ] {
            assert!(text.contains(metric), "dashboard lacks {metric}");
        }
        assert!(dashboard_config_map(&fixtures::from_yaml("monitoring: {dashboard: false}")).is_none());
    }

    #[test]
    fn each_policy_has_its_own_file_and_uid() {
        let one = dashboard_config_map(&fixtures::from_yaml("{}")).unwrap();
        let mut other_policy = fixtures::from_yaml("{}");
        other_policy.metadata.name = Some("support".into());
        let other = dashboard_config_map(&other_policy).unwrap();
        let (file_one, json_one) = one.data.as_ref().unwrap().iter().next().unwrap();
        let (file_other, json_other) = other.data.as_ref().unwrap().iter().next().unwrap();
        assert_eq!(file_one, "godel-guard-shop-payments.json");
        assert_ne!(file_one, file_other);
        let uid = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap()["uid"].clone();
        assert_ne!(uid(json_one), uid(json_other));
        assert!(uid(json_one).as_str().unwrap().len() <= 40, "Grafana uids are at most 40 characters");
    }
}
