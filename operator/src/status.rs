//! Conditions in the shape `kubectl wait` and Argo CD understand. A condition keeps its
//! `lastTransitionTime` unless its status really changes, so writing the same status
//! twice is a no-op and the operator never wakes itself in a loop.

use godel_crds::{GuardrailPolicy, GuardrailPolicySpec, GuardrailPolicyStatus, LimiterBackend, RedisMode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The conditions a policy's status carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    Ready,
    Progressing,
    Degraded,
    MonitoringConfigured,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::MonitoringConfigured => "MonitoringConfigured",
        }
    }
}

/// Every reason the operator writes, on a condition or an Event, and the `reason` label
/// of its reconcile metric for a spec it could not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    FleetReady,
    RollingOut,
    RolloutComplete,
    AsExpected,
    /// The monitoring objects were applied; as an Event, objects were written.
    Applied,
    PrometheusOperatorNotInstalled,
    DriftCorrected,
    InvalidGuardConfig,
    InvalidIngress,
    InvalidAutoscaling,
    InvalidDeployment,
    InvalidMetadata,
    InvalidSecrets,
    InvalidKeys,
    /// Redis credentials in a URL, or credential files the pods could not read.
    InvalidRedis,
    SecretNotFound,
    /// The API server refused an object of the plan.
    ApplyRejected,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FleetReady => "FleetReady",
            Reason::RollingOut => "RollingOut",
            Reason::RolloutComplete => "RolloutComplete",
            Reason::AsExpected => "AsExpected",
            Reason::Applied => "Applied",
            Reason::PrometheusOperatorNotInstalled => "PrometheusOperatorNotInstalled",
            Reason::DriftCorrected => "DriftCorrected",
            Reason::InvalidGuardConfig => "InvalidGuardConfig",
            Reason::InvalidIngress => "InvalidIngress",
            Reason::InvalidAutoscaling => "InvalidAutoscaling",
            Reason::InvalidDeployment => "InvalidDeployment",
            Reason::InvalidMetadata => "InvalidMetadata",
            Reason::InvalidSecrets => "InvalidSecrets",
            Reason::InvalidKeys => "InvalidKeys",
            Reason::InvalidRedis => "InvalidRedis",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::ApplyRejected => "ApplyRejected",
        }
    }
}

/// A condition as wanted now; `build` stamps it against the previous ones.
pub struct Wanted {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

pub fn build(wanted: Vec<Wanted>, previous: &[Condition], generation: Option<i64>, now: Time) -> Vec<Condition> {
    wanted
        .into_iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == w.type_.as_str() && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.as_str().to_owned(),
                status: status.to_owned(),
                reason: w.reason.as_str().to_owned(),
                message: w.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// What a pass observed of an applied policy's fleet.
pub struct Fleet {
    /// Pods the Deployment asks for (the autoscaler's count when there is one).
    pub desired: i32,
    pub ready: i32,
    /// Pods on the current pod template.
    pub updated: i32,
    /// The Deployment controller has seen the latest Deployment spec.
    pub rollout_observed: bool,
    /// prometheus-operator's kinds are served, so their objects were applied.
    pub monitoring: bool,
}

impl Fleet {
    pub fn ready(&self) -> bool {
        self.rollout_observed && self.ready >= self.desired && self.updated >= self.desired
    }

    /// `ready/desired`, the Replicas printer column.
    pub fn summary(&self) -> String {
        format!("{}/{}", self.ready, self.desired)
    }
}

/// How many guards must be ready for the fleet to be: what the Deployment asks for, and
/// never fewer than the policy's own count. A new Deployment under an autoscaler starts
/// at one pod until the autoscaler scales it to its minimum; one ready pod is not the
/// fleet the policy promised.
pub fn required_ready(spec: &GuardrailPolicySpec, deployment_replicas: Option<i32>) -> i32 {
    deployment_replicas.unwrap_or(0).max(spec.desired_replicas())
}

/// The conditions of a policy whose spec was applied, from what was observed: pure, so
/// each case is a plain test.
pub fn applied(fleet: &Fleet) -> Vec<Wanted> {
    let (summary, updated, desired) = (fleet.summary(), fleet.updated, fleet.desired);
    let ready = fleet.ready();
    vec![
        if ready {
            Wanted {
                type_: ConditionType::Ready,
                status: true,
                reason: Reason::FleetReady,
                message: format!("{summary} guards ready"),
            }
        } else {
            Wanted {
                type_: ConditionType::Ready,
                status: false,
                reason: Reason::RollingOut,
                message: format!("{summary} guards ready, {updated} updated"),
            }
        },
        Wanted {
            type_: ConditionType::Progressing,
            status: !ready,
            reason: if ready { Reason::RolloutComplete } else { Reason::RollingOut },
            message: format!("{updated}/{desired} guards on the current spec"),
        },
        Wanted { type_: ConditionType::Degraded, status: false, reason: Reason::AsExpected, message: String::new() },
        if fleet.monitoring {
            Wanted {
                type_: ConditionType::MonitoringConfigured,
                status: true,
                reason: Reason::Applied,
                message: "PrometheusRule and ServiceMonitor applied".into(),
            }
        } else {
            Wanted {
                type_: ConditionType::MonitoringConfigured,
                status: false,
                reason: Reason::PrometheusOperatorNotInstalled,
                message: "monitoring.coreos.com/v1 PrometheusRule and ServiceMonitor are not served: skipped".into(),
            }
        },
    ]
}

/// `local` or `redis/<mode>`, for the Mode printer column.
pub fn mode(policy: &GuardrailPolicy) -> String {
    let rate_limit = &policy.spec.guard.rate_limit;
    match (rate_limit.backend, &rate_limit.redis) {
        (LimiterBackend::Redis, Some(redis)) => format!(
            "redis/{}",
            match redis.mode {
                RedisMode::Standalone => "standalone",
                RedisMode::Sentinel => "sentinel",
                RedisMode::Cluster => "cluster",
            }
        ),
        _ => "local".to_owned(),
    }
}

/// Whether a status write would change anything (timestamps of unchanged conditions
/// are kept by `build`, so plain equality is the right test).
pub fn changed(current: Option<&GuardrailPolicyStatus>, next: &GuardrailPolicyStatus) -> bool {
    current != Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn the_fleet_is_never_smaller_than_the_policy_asks() {
        let scaled = crate::resources::fixtures::from_yaml("autoscaling: {minReplicas: 3, maxReplicas: 6}").spec;
        assert_eq!(required_ready(&scaled, Some(1)), 3, "a new Deployment at one pod, before the autoscaler acts");
        assert_eq!(required_ready(&scaled, Some(5)), 5, "the autoscaler's count above the minimum");
        assert_eq!(required_ready(&scaled, None), 3);
        let fixed = crate::resources::fixtures::from_yaml("deployment: {replicas: 2}").spec;
        assert_eq!(required_ready(&fixed, Some(2)), 2);
    }

    #[test]
    fn a_fleet_is_ready_only_when_the_rollout_is_observed_and_complete() {
        let fleet = |ready, updated, rollout_observed| Fleet {
            desired: 3,
            ready,
            updated,
            rollout_observed,
            monitoring: false,
        };
        let status_of = |f: &Fleet, t: ConditionType| {
            applied(f).into_iter().find(|w| w.type_ == t).map(|w| (w.status, w.reason.as_str()))
        };
        use ConditionType::{MonitoringConfigured, Progressing, Ready};
        assert_eq!(status_of(&fleet(3, 3, true), Ready), Some((true, "FleetReady")));
        assert_eq!(status_of(&fleet(3, 3, false), Ready), Some((false, "RollingOut")), "an unobserved spec");
        assert_eq!(status_of(&fleet(3, 2, true), Progressing), Some((true, "RollingOut")), "old pods remain");
        assert_eq!(status_of(&fleet(2, 3, true), Ready), Some((false, "RollingOut")));
        assert_eq!(
            status_of(&fleet(3, 3, true), MonitoringConfigured),
            Some((false, "PrometheusOperatorNotInstalled"))
        );
        assert_eq!(fleet(2, 3, true).summary(), "2/3");
    }

    #[test]
    fn transition_time_moves_only_on_a_real_transition() {
        let first = build(
            vec![Wanted {
                type_: ConditionType::Ready,
                status: false,
                reason: Reason::RollingOut,
                message: "0/3".into(),
            }],
            &[],
            Some(1),
            at(100),
        );
        let same = build(
            vec![Wanted {
                type_: ConditionType::Ready,
                status: false,
                reason: Reason::RollingOut,
                message: "1/3".into(),
            }],
            &first,
            Some(2),
            at(200),
        );
        assert_eq!(same[0].last_transition_time, at(100));
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = build(
            vec![Wanted {
                type_: ConditionType::Ready,
                status: true,
                reason: Reason::FleetReady,
                message: "3/3".into(),
            }],
            &same,
            Some(2),
            at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
    }
}
