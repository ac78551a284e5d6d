use std::collections::BTreeMap;

use godel_crds::GuardrailPolicy;
use k8s_openapi::api::core::v1::ConfigMap;

use super::{effective_guard_config, guard_name, metadata};

/// File name of the guard config inside the ConfigMap (and the pod).
pub const CONFIG_FILE: &str = "config.yaml";

/// The guard config as the pods read it. JSON is YAML, and serde_json's output is
/// deterministic, so the hash of this text changes exactly when the config does.
pub fn render_guard_config(policy: &GuardrailPolicy) -> String {
    serde_json::to_string_pretty(&effective_guard_config(policy)).expect("guard config always serializes")
}

pub fn config_map(policy: &GuardrailPolicy) -> ConfigMap {
    ConfigMap {
        metadata: metadata(policy, guard_name(policy)),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), render_guard_config(policy))])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn rendered_config_round_trips_and_passes_the_checks() {
        let policy = fixtures::from_yaml("guard: {defaultTier: premium}\ndeployment: {replicas: 4}");
        let text = &config_map(&policy).data.unwrap()[CONFIG_FILE];
        let value: serde_json::Value = serde_yaml::from_str(text).unwrap();
        let loaded: godel_crds::GuardConfig = serde_json::from_value(value).unwrap();
        assert_eq!(loaded.default_tier, "premium");
        assert_eq!(loaded.rate_limit.replicas, 4, "the fallback divides by the fleet size");
        godel_traps::check(&loaded).unwrap();
    }
}
