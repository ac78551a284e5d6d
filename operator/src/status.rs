//! Conditions in the shape `kubectl wait` and Argo CD understand. A condition keeps its
//! `lastTransitionTime` unless its status really changes, so writing the same status
//! twice is a no-op and the operator never wakes itself in a loop.

use godel_crds::{GuardrailPolicy, GuardrailPolicySpec, GuardrailPolicyStatus, LimiterBackend, RedisMode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const MONITORING: &str = "MonitoringConfigured";

/// A condition as wanted now; `build` stamps it against the previous ones.
pub struct Wanted<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

pub fn build(wanted: Vec<Wanted<'_>>, previous: &[Condition], generation: Option<i64>, now: Time) -> Vec<Condition> {
    wanted
        .into_iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.to_owned(),
                status: status.to_owned(),
                reason: w.reason.to_owned(),
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
pub fn desired(spec: &GuardrailPolicySpec, deployment_replicas: Option<i32>) -> i32 {
    deployment_replicas.unwrap_or(0).max(spec.desired_replicas())
}

/// The conditions of a policy whose spec was applied, from what was observed: pure, so
/// each case is a plain test.
pub fn applied(fleet: &Fleet) -> Vec<Wanted<'static>> {
    let (summary, updated, desired) = (fleet.summary(), fleet.updated, fleet.desired);
    let ready = fleet.ready();
    vec![
        if ready {
            Wanted { type_: READY, status: true, reason: "FleetReady", message: format!("{summary} guards ready") }
        } else {
            Wanted {
                type_: READY,
                status: false,
                reason: "RollingOut",
                message: format!("{summary} guards ready, {updated} updated"),
            }
        },
        Wanted {
            type_: PROGRESSING,
            status: !ready,
            reason: if ready { "RolloutComplete" } else { "RollingOut" },
            message: format!("{updated}/{desired} guards on the current spec"),
        },
        Wanted { type_: DEGRADED, status: false, reason: "AsExpected", message: String::new() },
        if fleet.monitoring {
            Wanted {
                type_: MONITORING,
                status: true,
                reason: "Applied",
                message: "PrometheusRule and ServiceMonitor applied".into(),
            }
        } else {
            Wanted {
                type_: MONITORING,
                status: false,
                reason: "PrometheusOperatorNotInstalled",
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
        assert_eq!(desired(&scaled, Some(1)), 3, "a new Deployment at one pod, before the autoscaler acts");
        assert_eq!(desired(&scaled, Some(5)), 5, "the autoscaler's count above the minimum");
        assert_eq!(desired(&scaled, None), 3);
        let fixed = crate::resources::fixtures::from_yaml("deployment: {replicas: 2}").spec;
        assert_eq!(desired(&fixed, Some(2)), 2);
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
        let status_of =
            |f: &Fleet, t: &str| applied(f).into_iter().find(|w| w.type_ == t).map(|w| (w.status, w.reason));
        assert_eq!(status_of(&fleet(3, 3, true), READY), Some((true, "FleetReady")));
        assert_eq!(status_of(&fleet(3, 3, false), READY), Some((false, "RollingOut")), "an unobserved spec");
        assert_eq!(status_of(&fleet(3, 2, true), PROGRESSING), Some((true, "RollingOut")), "old pods remain");
        assert_eq!(status_of(&fleet(2, 3, true), READY), Some((false, "RollingOut")));
        assert_eq!(status_of(&fleet(3, 3, true), MONITORING), Some((false, "PrometheusOperatorNotInstalled")));
        assert_eq!(fleet(2, 3, true).summary(), "2/3");
    }

    #[test]
    fn transition_time_moves_only_on_a_real_transition() {
        let first = build(
            vec![Wanted { type_: READY, status: false, reason: "Progressing", message: "0/3".into() }],
            &[],
            Some(1),
            at(100),
        );
        let same = build(
            vec![Wanted { type_: READY, status: false, reason: "Progressing", message: "1/3".into() }],
            &first,
            Some(2),
            at(200),
        );
        assert_eq!(same[0].last_transition_time, at(100));
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = build(
            vec![Wanted { type_: READY, status: true, reason: "FleetReady", message: "3/3".into() }],
            &same,
            Some(2),
            at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
    }
}
