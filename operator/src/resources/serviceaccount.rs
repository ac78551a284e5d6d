use std::collections::BTreeMap;

use godel_crds::GuardrailPolicy;
use k8s_openapi::api::core::v1::ServiceAccount;

use super::{guard_name, metadata};

pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The guard's identity; with `roleArn`, EKS injects IRSA web-identity credentials that
/// the guard's KMS key source picks up through the default chain.
pub fn service_account(policy: &GuardrailPolicy) -> ServiceAccount {
    let settings = &policy.spec.service_account;
    let mut annotations: BTreeMap<String, String> = settings.annotations.clone();
    if let Some(arn) = &settings.role_arn {
        annotations.insert(IRSA_ANNOTATION.into(), arn.clone());
    }
    let mut meta = metadata(policy, guard_name(policy));
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    ServiceAccount { metadata: meta, automount_service_account_token: Some(false), ..ServiceAccount::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn irsa_annotation_only_when_configured() {
        let plain = service_account(&fixtures::from_yaml("{}"));
        assert!(plain.metadata.annotations.is_none());
        let irsa =
            service_account(&fixtures::from_yaml("serviceAccount: {roleArn: 'arn:aws:iam::123456789012:role/godel'}"));
        assert_eq!(irsa.metadata.annotations.unwrap()[IRSA_ANNOTATION], "arn:aws:iam::123456789012:role/godel");
        assert_eq!(irsa.automount_service_account_token, Some(false), "the guard never calls the Kubernetes API");
    }
}
