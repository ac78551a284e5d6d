use godel_crds::GuardrailPolicy;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

use super::{guard_name, metadata};

/// Scales on CPU (the traps are CPU-bound); `None` when autoscaling is off.
pub fn autoscaler(policy: &GuardrailPolicy) -> Option<HorizontalPodAutoscaler> {
    let settings = policy.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: metadata(policy, guard_name(policy)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: guard_name(policy),
            },
            min_replicas: Some(settings.min_replicas()),
            max_replicas: settings.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(settings.target_cpu_utilization_percentage()),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        },
        ..HorizontalPodAutoscaler::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn only_when_enabled_and_at_seventy_percent_cpu() {
        assert!(autoscaler(&fixtures::from_yaml("{}")).is_none());
        let hpa = autoscaler(&fixtures::from_yaml("autoscaling: {maxReplicas: 12}")).unwrap();
        let spec = hpa.spec;
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 12));
        let metrics = spec.metrics.unwrap();
        let target = &metrics[0].resource.as_ref().unwrap().target;
        assert_eq!(target.average_utilization, Some(70));
    }
}
