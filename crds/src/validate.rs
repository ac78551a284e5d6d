//! The relations between a policy's fleet fields. Each is a CEL rule in the CRD (the API
//! server refuses a policy that breaks it) and, named beside it, its twin here: the
//! operator checks again before it applies, so a policy written before a rule existed,
//! or sent to an API server without CEL validation, is reported instead of rolled out.
//! The guard's own config is checked by `godel_config` (`GuardConfig::validate`).

use crate::{AutoscalingSettings, DRAIN_DELAY_MS, DeploymentSettings, GuardrailPolicySpec, IngressController};

/// CEL `self.controller != 'alb' || has(self.wafAclArn)` on `spec.ingress`.
pub(crate) const ALB_NEEDS_WAF: &str = "an ALB rate-limits through a WAF web ACL: set wafAclArn";
/// CEL `!has(self.minReplicas) || self.minReplicas <= self.maxReplicas` on
/// `spec.autoscaling`. The twin is stricter: it compares the defaulted minimum (3), which
/// the rule cannot see, so `maxReplicas: 2` alone is refused before an autoscaler is.
pub(crate) const MIN_ABOVE_MAX: &str = "minReplicas must not exceed maxReplicas";
/// CEL on `spec.deployment`: the grace period outlasts the preStop pause and the drain.
pub(crate) const GRACE_TOO_SHORT: &str =
    "terminationGracePeriodSeconds must be longer than preStopDelaySeconds plus the guard's 1 s drain";

/// A policy whose fleet fields contradict each other, by the field that says so.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPolicy {
    #[error("spec.ingress: {ALB_NEEDS_WAF}")]
    AlbWithoutWaf,
    #[error("spec.autoscaling: {MIN_ABOVE_MAX}")]
    MinAboveMax,
    #[error("spec.deployment: {GRACE_TOO_SHORT}")]
    GraceTooShort,
}

impl GuardrailPolicySpec {
    /// The CEL rules' twins, in the order the fields appear.
    pub fn check_relations(&self) -> Result<(), InvalidPolicy> {
        if !self.deployment.grace_outlasts_drain() {
            return Err(InvalidPolicy::GraceTooShort);
        }
        if self.autoscaling.as_ref().is_some_and(|a| !a.min_within_max()) {
            return Err(InvalidPolicy::MinAboveMax);
        }
        if self.ingress.as_ref().is_some_and(|i| i.controller == IngressController::Alb && i.waf_acl_arn.is_none()) {
            return Err(InvalidPolicy::AlbWithoutWaf);
        }
        Ok(())
    }
}

impl DeploymentSettings {
    fn grace_outlasts_drain(&self) -> bool {
        self.termination_grace_period_seconds() > self.pre_stop_delay_seconds() + DRAIN_DELAY_MS / 1000
    }
}

impl AutoscalingSettings {
    fn min_within_max(&self) -> bool {
        self.min_replicas() <= self.max_replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> GuardrailPolicySpec {
        serde_json::from_value(serde_yaml::from_str(yaml).expect("YAML")).expect("a spec")
    }

    #[test]
    fn each_cel_rule_has_its_twin() {
        assert_eq!(spec("{}").check_relations(), Ok(()));
        let alb = spec("ingress: {host: g.example, controller: alb, requestsPerSecond: 5}");
        assert_eq!(alb.check_relations(), Err(InvalidPolicy::AlbWithoutWaf));
        let nginx = spec("ingress: {host: g.example, controller: nginx, requestsPerSecond: 5}");
        assert_eq!(nginx.check_relations(), Ok(()));
        let inverted = spec("autoscaling: {minReplicas: 5, maxReplicas: 2}");
        assert_eq!(inverted.check_relations(), Err(InvalidPolicy::MinAboveMax));
        let below_default = spec("autoscaling: {maxReplicas: 2}");
        assert_eq!(below_default.check_relations(), Err(InvalidPolicy::MinAboveMax), "the default minimum is 3");
        let short = spec("deployment: {terminationGracePeriodSeconds: 6, preStopDelaySeconds: 5}");
        assert_eq!(short.check_relations(), Err(InvalidPolicy::GraceTooShort));
        assert_eq!(
            spec("deployment: {terminationGracePeriodSeconds: 7, preStopDelaySeconds: 5}").check_relations(),
            Ok(())
        );
        assert!(InvalidPolicy::AlbWithoutWaf.to_string().starts_with("spec.ingress: "));
    }
}
