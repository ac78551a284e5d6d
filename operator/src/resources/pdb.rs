use godel_crds::GuardrailPolicy;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{guard_name, metadata, selector_labels};

/// Voluntary disruptions (node drains, upgrades) take one guard pod at a time.
pub fn disruption_budget(policy: &GuardrailPolicy) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(policy, guard_name(policy)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(policy)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
