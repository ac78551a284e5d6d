use std::collections::BTreeMap;

use godel_crds::GuardrailPolicy;
use k8s_openapi::api::core::v1::ConfigMap;

use super::{GuardConfigFile, guard_name, metadata};

/// File name of the guard config inside the ConfigMap (and the pod).
pub(super) const CONFIG_FILE: &str = "config.yaml";
/// Key of the fleet size, read by the pods into `GODEL_FLEET_SIZE` when they start. It is
/// not part of the config file, so resizing the fleet does not roll it.
pub(super) const FLEET_SIZE_KEY: &str = "fleet-size";

/// The guard's config file and the fleet size, mounted and read by the pods.
pub fn config_map(policy: &GuardrailPolicy, config: &GuardConfigFile) -> ConfigMap {
    ConfigMap {
        metadata: metadata(policy, guard_name(policy)),
        data: Some(BTreeMap::from([
            (CONFIG_FILE.to_owned(), config.text.clone()),
            (FLEET_SIZE_KEY.to_owned(), policy.spec.max_fleet_size().to_string()),
        ])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    fn data(policy: &GuardrailPolicy) -> BTreeMap<String, String> {
        config_map(policy, &GuardConfigFile::render(policy).unwrap()).data.unwrap()
    }

    #[test]
    fn rendered_config_round_trips_and_passes_the_checks() {
        let policy = fixtures::from_yaml("guard: {defaultTier: premium}\ndeployment: {replicas: 4}");
        let text = &data(&policy)[CONFIG_FILE];
        let value: serde_json::Value = serde_yaml::from_str(text).unwrap();
        let loaded: godel_crds::GuardConfig = serde_json::from_value(value).unwrap();
        assert_eq!(loaded.default_tier, "premium");
        godel_traps::check(&loaded).unwrap();
        assert_eq!(data(&policy)[FLEET_SIZE_KEY], "4", "the fallback divides by the fleet size");
        let autoscaled = fixtures::from_yaml("autoscaling: {minReplicas: 3, maxReplicas: 12}");
        assert_eq!(data(&autoscaled)[FLEET_SIZE_KEY], "12", "the largest the fleet can be");
    }
}
