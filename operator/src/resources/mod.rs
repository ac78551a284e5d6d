//! Pure functions from a policy to the objects that run its guard fleet. No I/O: the
//! reconciler applies what these return, and the tests check them field by field.

mod configmap;
mod dashboard;
mod deployment;
mod hpa;
mod ingress;
mod monitoring;
mod pdb;
mod service;
mod serviceaccount;

use std::collections::BTreeMap;

use godel_crds::GuardrailPolicy;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use configmap::config_map;
pub use dashboard::{DASHBOARD_JSON, dashboard_config_map, dashboard_name};
pub use deployment::{
    CONFIG_DIR, CONFIG_HASH_ANNOTATION, IDENTITY_HASH_ANNOTATION, SECRETS_HASH_ANNOTATION, deployment,
};
pub use hpa::autoscaler;
pub use ingress::{PUBLIC_PATHS, ingress};
pub use monitoring::{
    alert_groups, default_cpu_request_cores, prometheus_rule, prometheus_rule_resource, service_monitor,
    service_monitor_resource,
};
pub use pdb::disruption_budget;
pub use service::service;
pub use serviceaccount::{IRSA_ANNOTATION, service_account};

/// Port the guard listens on, named `http` in the pod and the Service.
pub const GUARD_PORT: i32 = 8080;

/// Name of every per-policy object (Deployment, Service, ConfigMap, …).
pub fn guard_name(policy: &GuardrailPolicy) -> String {
    format!("{}-guard", policy.name_any())
}

/// Labels that select a policy's guard pods.
pub fn selector_labels(policy: &GuardrailPolicy) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "godel-guard".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), policy.name_any()),
    ])
}

/// Labels on every object the operator writes.
pub fn labels(policy: &GuardrailPolicy) -> BTreeMap<String, String> {
    let mut labels = selector_labels(policy);
    labels.insert("app.kubernetes.io/component".into(), "guard".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "godel-operator".into());
    labels
}

/// Metadata in the policy's namespace, owned by the policy (so deleting it deletes
/// them; owner references cannot cross namespaces, so nothing goes elsewhere).
pub fn metadata(policy: &GuardrailPolicy, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: policy.namespace(),
        labels: Some(labels(policy)),
        owner_references: owner_reference(policy).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(policy: &GuardrailPolicy) -> Option<OwnerReference> {
    policy.controller_owner_ref(&())
}

/// A kind the operator writes, and what it needs to do with it.
pub struct OwnedKind {
    pub api_group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub kind: &'static str,
    /// Watched (by label) so a change or deletion wakes the reconciler.
    pub watched: bool,
    /// Deleted when a policy stops asking for it.
    pub removable: bool,
}

impl OwnedKind {
    /// The owned kind served at `resource`.
    pub fn of(resource: &ApiResource) -> Option<&'static OwnedKind> {
        OWNED_KINDS.iter().find(|k| k.api_group == resource.group && k.resource == resource.plural)
    }

    pub fn api_resource(&self) -> ApiResource {
        let gvk = kube::api::GroupVersionKind::gvk(self.api_group, self.version, self.kind);
        ApiResource::from_gvk_with_plural(&gvk, self.resource)
    }
}

/// The kinds the operator owns, listed once: the controller watches those marked `watched`;
/// the ClusterRole in `config/operator` and the objects [`plan`] renders are checked
/// against it by tests.
pub const OWNED_KINDS: &[OwnedKind] = &[
    OwnedKind {
        api_group: "",
        version: "v1",
        resource: "serviceaccounts",
        kind: "ServiceAccount",
        watched: true,
        removable: false,
    },
    OwnedKind {
        api_group: "",
        version: "v1",
        resource: "configmaps",
        kind: "ConfigMap",
        watched: true,
        removable: true,
    },
    OwnedKind {
        api_group: "apps",
        version: "v1",
        resource: "deployments",
        kind: "Deployment",
        watched: true,
        removable: false,
    },
    OwnedKind { api_group: "", version: "v1", resource: "services", kind: "Service", watched: true, removable: false },
    OwnedKind {
        api_group: "policy",
        version: "v1",
        resource: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        watched: true,
        removable: false,
    },
    OwnedKind {
        api_group: "autoscaling",
        version: "v2",
        resource: "horizontalpodautoscalers",
        kind: "HorizontalPodAutoscaler",
        watched: true,
        removable: true,
    },
    OwnedKind {
        api_group: "networking.k8s.io",
        version: "v1",
        resource: "ingresses",
        kind: "Ingress",
        watched: true,
        removable: true,
    },
    OwnedKind {
        api_group: "monitoring.coreos.com",
        version: "v1",
        resource: "prometheusrules",
        kind: "PrometheusRule",
        watched: false,
        removable: false,
    },
    OwnedKind {
        api_group: "monitoring.coreos.com",
        version: "v1",
        resource: "servicemonitors",
        kind: "ServiceMonitor",
        watched: false,
        removable: false,
    },
];

/// The guard config file as the pods read it, rendered once per pass: the ConfigMap
/// carries the text, the pod template and the policy's status carry its hash.
pub struct GuardConfigFile {
    pub text: String,
    pub hash: String,
}

impl GuardConfigFile {
    /// JSON is YAML, and serde_json's output is deterministic, so the hash changes exactly
    /// when the config does.
    pub fn render(policy: &GuardrailPolicy) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string_pretty(&policy.spec.guard)?;
        let hash = content_hash(text.as_bytes());
        Ok(Self { text, hash })
    }
}

/// One object the policy asks for, as the API server will receive it: the API resource
/// it lives at (for the k8s-openapi kinds, their own group, version, kind and plural)
/// and the object.
pub struct Owned {
    pub resource: ApiResource,
    pub object: DynamicObject,
}

impl Owned {
    fn typed<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> Result<Self, serde_json::Error> {
        Ok(Self {
            resource: ApiResource::erase::<K>(&()),
            object: serde_json::from_value(serde_json::to_value(object)?)?,
        })
    }

    pub fn name(&self) -> String {
        self.object.name_any()
    }

    /// `Kind name`, as Events and logs name an object.
    pub fn describe(&self) -> String {
        format!("{} {}", self.resource.kind, self.name())
    }
}

/// An object the policy no longer asks for: deleted if it exists.
pub struct Absent {
    pub resource: ApiResource,
    pub name: String,
}

impl Absent {
    fn of<K: Resource<DynamicType = ()>>(name: String) -> Self {
        Self { resource: ApiResource::erase::<K>(&()), name }
    }
}

/// The whole desired state of one policy, computed without I/O: what a reconcile pass
/// applies and deletes, and what `godel-operator render` prints.
pub struct Plan {
    pub config: GuardConfigFile,
    /// In apply order.
    pub apply: Vec<Owned>,
    pub absent: Vec<Absent>,
}

impl Plan {
    /// The objects to apply, in order, as JSON.
    pub fn manifests(&self) -> Vec<serde_json::Value> {
        self.apply
            .iter()
            .map(|owned| serde_json::to_value(&owned.object).expect("a DynamicObject has string keys only"))
            .collect()
    }
}

/// The desired state of a policy. `secrets_hash` summarises the referenced Secrets'
/// versions; monitoring objects are included when `monitoring` says the
/// prometheus-operator kinds exist (they are never deleted: the kinds may come back).
pub fn plan(policy: &GuardrailPolicy, secrets_hash: &str, monitoring: bool) -> Result<Plan, serde_json::Error> {
    let config = GuardConfigFile::render(policy)?;
    let mut apply = vec![
        Owned::typed(&service_account(policy))?,
        Owned::typed(&config_map(policy, &config))?,
        Owned::typed(&deployment(policy, &config, secrets_hash))?,
        Owned::typed(&service(policy))?,
        Owned::typed(&disruption_budget(policy))?,
    ];
    let mut absent = Vec::new();
    let name = guard_name(policy);
    match autoscaler(policy) {
        Some(hpa) => apply.push(Owned::typed(&hpa)?),
        None => absent.push(Absent::of::<HorizontalPodAutoscaler>(name.clone())),
    }
    match dashboard_config_map(policy) {
        Some(dashboard) => apply.push(Owned::typed(&dashboard)?),
        None => absent.push(Absent::of::<ConfigMap>(dashboard_name(policy))),
    }
    match ingress(policy) {
        Some(ingress) => apply.push(Owned::typed(&ingress)?),
        None => absent.push(Absent::of::<Ingress>(name)),
    }
    if monitoring {
        apply.push(Owned { resource: prometheus_rule_resource(), object: prometheus_rule(policy) });
        apply.push(Owned { resource: service_monitor_resource(), object: service_monitor(policy) });
    }
    Ok(Plan { config, apply, absent })
}

/// Short content hash, for annotations that must change exactly when content does.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

#[cfg(test)]
pub(crate) mod fixtures {
    use godel_crds::{GuardrailPolicy, GuardrailPolicySpec};

    /// A policy as the API server would return it: named, namespaced, with a uid.
    pub(crate) fn policy(spec: GuardrailPolicySpec) -> GuardrailPolicy {
        let mut p = GuardrailPolicy::new("payments", spec);
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("8b0e1c0e-2f3c-4c47-9b7a-1f4c7e0e9a11".into());
        p.metadata.generation = Some(3);
        p
    }

    pub(crate) fn from_yaml(yaml: &str) -> GuardrailPolicy {
        // Through JSON, as the API server hands it over: externally tagged enums (a key
        // source's `{file: …}`) read as they do from the API.
        policy(serde_json::from_value(serde_yaml::from_str::<serde_json::Value>(yaml).unwrap()).unwrap())
    }

    /// A policy whose keys come from a mounted Secret, as the fleet needs, with `rest`
    /// (further top-level spec lines).
    pub(crate) fn keyed(rest: &str) -> GuardrailPolicy {
        from_yaml(&format!(
            "guard: {{audit: {{key: {{file: {{path: /etc/godel/keys/key}}}}, salt: {{file: {{path: /etc/godel/keys/salt}}}}}}}}\n\
             secrets: [{{name: keys, mountPath: /etc/godel/keys}}]\n{rest}"
        ))
    }
}
