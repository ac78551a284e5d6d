use std::collections::BTreeMap;

use godel_crds::GuardrailPolicy;
use k8s_openapi::api::core::v1::ConfigMap;

use super::{guard_name, metadata};

/// The Grafana dashboard, also shipped as `config/grafana` for installs without the
/// operator. Grafana's sidecar loads ConfigMaps labelled `grafana_dashboard: "1"`.
pub const DASHBOARD_JSON: &str = include_str!("dashboard.json");

pub fn dashboard_config_map(policy: &GuardrailPolicy) -> Option<ConfigMap> {
    if policy.spec.monitoring.dashboard == Some(false) {
        return None;
    }
    let mut meta = metadata(policy, format!("{}-dashboard", guard_name(policy)));
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert("grafana_dashboard".into(), "1".into());
    }
    Some(ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([("godel-guard.json".to_owned(), DASHBOARD_JSON.to_owned())])),
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
}
