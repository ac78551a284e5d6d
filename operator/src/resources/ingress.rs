use std::collections::BTreeMap;

use godel_crds::{GuardrailPolicy, IngressController};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};

use super::{guard_name, metadata};

/// The API routes clients call. `/metrics` and the probes stay inside the cluster.
pub const PUBLIC_PATHS: [(&str, &str); 8] = [
    ("/v1/inspect", "Exact"),
    ("/v1/chat/completions", "Exact"),
    ("/v1/responses", "Exact"),
    ("/v1/completions", "Exact"),
    ("/v1/embeddings", "Exact"),
    ("/v1/messages", "Exact"),
    ("/v1/messages/count_tokens", "Exact"),
    // A prefix matches whole path elements: the list and `/v1/models/{model}`, nothing else.
    ("/v1/models", "Prefix"),
];

/// The coarse first layer: per-client-address limits at the edge, before the guards'
/// per-user buckets. NGINX enforces them itself; the AWS ALB delegates them to a WAF
/// web ACL whose rate-based rule the annotation attaches.
pub fn ingress(policy: &GuardrailPolicy) -> Option<Ingress> {
    let settings = policy.spec.ingress.as_ref()?;
    let rps = settings.requests_per_second;
    let annotations: BTreeMap<String, String> = match settings.controller {
        IngressController::Nginx => BTreeMap::from([
            ("nginx.ingress.kubernetes.io/limit-rps".into(), rps.to_string()),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier".into(), "3".into()),
            ("nginx.ingress.kubernetes.io/limit-connections".into(), (rps * 2).to_string()),
            ("nginx.ingress.kubernetes.io/proxy-body-size".into(), "1m".into()),
        ]),
        IngressController::Alb => {
            let mut a = BTreeMap::from([
                ("alb.ingress.kubernetes.io/scheme".into(), "internet-facing".into()),
                ("alb.ingress.kubernetes.io/target-type".into(), "ip".into()),
                ("alb.ingress.kubernetes.io/healthcheck-path".into(), "/health".into()),
            ]);
            if let Some(arn) = &settings.waf_acl_arn {
                a.insert("alb.ingress.kubernetes.io/wafv2-acl-arn".into(), arn.clone());
            }
            a
        }
    };
    let mut meta = metadata(policy, guard_name(policy));
    meta.annotations = Some(annotations);
    let class = settings.ingress_class_name.clone().or_else(|| {
        Some(match settings.controller {
            IngressController::Nginx => "nginx".into(),
            IngressController::Alb => "alb".into(),
        })
    });
    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: class,
            tls: settings.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS { hosts: Some(vec![settings.host.clone()]), secret_name: Some(secret.clone()) }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(settings.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: PUBLIC_PATHS
                        .iter()
                        .map(|(path, path_type)| HTTPIngressPath {
                            path: Some((*path).into()),
                            path_type: (*path_type).into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: guard_name(policy),
                                    port: Some(ServiceBackendPort {
                                        name: Some("http".into()),
                                        ..ServiceBackendPort::default()
                                    }),
                                }),
                                ..IngressBackend::default()
                            },
                        })
                        .collect(),
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn nginx_and_alb_annotations() {
        assert!(ingress(&fixtures::from_yaml("{}")).is_none());
        let nginx = ingress(&fixtures::from_yaml(
            "ingress: {host: guard.example.com, controller: nginx, requestsPerSecond: 20}",
        ))
        .unwrap();
        assert_eq!(nginx.metadata.annotations.unwrap()["nginx.ingress.kubernetes.io/limit-rps"], "20");
        let paths: Vec<_> = nginx.spec.unwrap().rules.unwrap()[0]
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| (p.path.clone().unwrap(), p.path_type.clone()))
            .collect();
        let expected: Vec<(String, String)> =
            PUBLIC_PATHS.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        assert_eq!(paths, expected);
        let alb = ingress(&fixtures::from_yaml(
            "ingress: {host: g.example.com, controller: alb, requestsPerSecond: 20, wafAclArn: 'arn:aws:wafv2:eu-west-1:1:regional/webacl/g/1'}",
        ))
        .unwrap();
        assert!(alb.metadata.annotations.unwrap().contains_key("alb.ingress.kubernetes.io/wafv2-acl-arn"));
    }
}
