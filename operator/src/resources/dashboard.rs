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
    fn dashboard_is_labelled_and_has_what_grafana_and_its_sidecar_require() {
        let cm = dashboard_config_map(&fixtures::from_yaml("{}")).unwrap();
        assert_eq!(cm.metadata.labels.unwrap()["grafana_dashboard"], "1");
        assert!(dashboard_config_map(&fixtures::from_yaml("monitoring: {dashboard: false}")).is_none());

        // What Grafana's dashboard model requires to load the JSON as it is provisioned.
        let json: serde_json::Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
        assert!(json["schemaVersion"].as_u64().unwrap() >= 36, "a schema current Grafana migrates from");
        for field in ["title", "uid"] {
            assert!(json[field].as_str().is_some_and(|v| !v.is_empty()), "{field}");
        }
        let variables: Vec<&str> =
            json["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(variables, ["datasource", "namespace", "job"]);
        let panels = json["panels"].as_array().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        let mut cells = std::collections::BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap();
            assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: panel ids are unique");
            assert!(["timeseries", "stat"].contains(&panel["type"].as_str().unwrap()), "{title}");
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title} follows the datasource variable");
            let grid = &panel["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap());
            assert!(x + w <= 24 && h > 0, "{title} fits Grafana's 24 columns");
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                assert!(cells.insert(cell), "{title} overlaps another panel");
            }
            let targets = panel["targets"].as_array().unwrap();
            let refs: std::collections::BTreeSet<&str> = targets.iter().map(|t| t["refId"].as_str().unwrap()).collect();
            assert_eq!(refs.len(), targets.len(), "{title}: each query has its own refId");
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                assert!(expr.contains("namespace=~\"$namespace\", job=~\"$job\""), "{title} follows the variables");
            }
        }
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
