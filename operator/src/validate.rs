//! What must hold before the operator touches a running fleet: the guard config passes
//! the guard's own start-up checks (`godel_traps::check`, the same validation and rule
//! compiler, so a regex that would crash a pod never reaches one), and every referenced
//! Secret exists.

use godel_crds::{GuardrailPolicy, IngressController};

/// Why a spec cannot be applied, with the condition reason it maps to.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

/// Checks that need no API calls.
pub fn spec(policy: &GuardrailPolicy) -> Result<(), Invalid> {
    godel_traps::check(&policy.spec.guard)
        .map_err(|e| Invalid { reason: "InvalidGuardConfig", message: format!("spec.guard: {e}") })?;
    if let Some(ingress) = &policy.spec.ingress
        && ingress.controller == IngressController::Alb
        && ingress.waf_acl_arn.is_none()
    {
        return Err(Invalid {
            reason: "InvalidIngress",
            message: "spec.ingress: an ALB rate-limits through a WAF web ACL: set wafAclArn".into(),
        });
    }
    if let Some(a) = &policy.spec.autoscaling
        && a.min_replicas() > a.max_replicas
    {
        return Err(Invalid {
            reason: "InvalidAutoscaling",
            message: "spec.autoscaling: minReplicas > maxReplicas".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn broken_regex_is_caught_with_the_rule_name() {
        let p = fixtures::from_yaml("guard: {traps: {regex: {rules: [{name: bad-rule, pattern: '(unclosed'}]}}}");
        let err = spec(&p).unwrap_err();
        assert_eq!(err.reason, "InvalidGuardConfig");
        assert!(err.message.contains("bad-rule"), "{}", err.message);
        assert!(spec(&fixtures::from_yaml("{}")).is_ok());
    }
}
