use godel_crds::GuardrailPolicy;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{GUARD_PORT, guard_name, metadata, selector_labels};

pub fn service(policy: &GuardrailPolicy) -> Service {
    Service {
        metadata: metadata(policy, guard_name(policy)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(policy)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: GUARD_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
