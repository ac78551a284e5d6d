//! The `GuardrailPolicy` custom resource: the guard's configuration plus how to run the
//! fleet (replicas, autoscaling, identity, monitoring, ingress). Every field is optional
//! with its default in code, never in the schema.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::GuardConfig;
use crate::validate::{ALB_NEEDS_WAF, GRACE_TOO_SHORT, MIN_ABOVE_MAX};

/// Default image of the guard; `spec.deployment.image` overrides it.
pub const DEFAULT_IMAGE: &str = "ghcr.io/godel-guardrail/godel-guard:0.1.0";

// The fleet's defaults, written once: the production checklist's three pods (with an
// autoscaler too), a 30 s grace period with a 5 s preStop pause, and 70 % CPU.
pub const DEFAULT_REPLICAS: i32 = 3;
pub const DEFAULT_GRACE_SECONDS: i64 = 30;
pub const DEFAULT_PRE_STOP_SECONDS: i64 = 5;
pub const DEFAULT_CPU_TARGET: i32 = 70;
/// Security debt growth (points per second over 5 minutes) that pages.
pub const DEFAULT_DEBT_ALERT_THRESHOLD: f64 = 10.0;
/// A guard's CPU request; the CPU alerts compare usage with it.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// How long a guard keeps answering after SIGTERM (`--drain-delay-ms`), after the preStop
/// pause: the grace period must cover both and leave time for in-flight requests.
pub const DRAIN_DELAY_MS: i64 = 1000;

impl GuardrailPolicySpec {
    /// Pods the fleet runs when it starts: the spec's count, or the autoscaler's minimum.
    pub fn desired_replicas(&self) -> i32 {
        match &self.autoscaling {
            Some(a) => a.min_replicas(),
            None => self.deployment.replicas(),
        }
    }

    /// The largest the fleet can grow: what the local rate-limit fallback divides by,
    /// so a fleet cut off from Redis never exceeds the global limit.
    pub fn max_fleet_size(&self) -> i32 {
        match &self.autoscaling {
            Some(a) => a.max_replicas.max(a.min_replicas()),
            None => self.deployment.replicas(),
        }
        .max(1)
    }
}

impl DeploymentSettings {
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    pub fn termination_grace_period_seconds(&self) -> i64 {
        self.termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS)
    }

    pub fn pre_stop_delay_seconds(&self) -> i64 {
        self.pre_stop_delay_seconds.unwrap_or(DEFAULT_PRE_STOP_SECONDS)
    }

    /// The spec's resources, or requests of 100m CPU and 128Mi, limits of 1 CPU and 256Mi.
    pub fn resources(&self) -> ResourceRequirements {
        self.resources.clone().unwrap_or_else(|| {
            let q = |s: &str| Quantity(s.to_owned());
            ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".into(), q(DEFAULT_CPU_REQUEST)), ("memory".into(), q("128Mi"))])),
                limits: Some(BTreeMap::from([("cpu".into(), q("1")), ("memory".into(), q("256Mi"))])),
                ..ResourceRequirements::default()
            }
        })
    }
}

impl MonitoringSettings {
    pub fn debt_alert_threshold(&self) -> f64 {
        self.debt_alert_threshold.unwrap_or(DEFAULT_DEBT_ALERT_THRESHOLD)
    }

    /// Whether the Grafana dashboard ConfigMap is rendered [default: true].
    pub fn dashboard(&self) -> bool {
        self.dashboard.unwrap_or(true)
    }
}

impl AutoscalingSettings {
    pub fn min_replicas(&self) -> i32 {
        self.min_replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    pub fn target_cpu_utilization_percentage(&self) -> i32 {
        self.target_cpu_utilization_percentage.unwrap_or(DEFAULT_CPU_TARGET)
    }
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "guardrails.godel.dev",
    version = "v1alpha1",
    kind = "GuardrailPolicy",
    plural = "guardrailpolicies",
    shortname = "guardrails",
    shortname = "ggp",
    category = "godel",
    namespaced,
    status = "GuardrailPolicyStatus",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Replicas", "type": "string", "jsonPath": ".status.replicaSummary"}"#,
    printcolumn = r#"{"name": "Mode", "type": "string", "jsonPath": ".status.mode"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailPolicySpec {
    /// The guard's configuration, rendered into the guard's ConfigMap as its config file.
    #[serde(default)]
    pub guard: GuardConfig,
    #[serde(default)]
    pub deployment: DeploymentSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSettings>,
    #[serde(default)]
    pub service_account: ServiceAccountSettings,
    #[serde(default)]
    pub monitoring: MonitoringSettings,
    /// An Ingress in front of the guards with the controller's own rate limiting: the
    /// coarse first layer, before the per-user limits of the guards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSettings>,
    /// Secrets mounted into the guard pods (key files, KMS ciphertext files). They are
    /// watched: a change rolls the pods, and a missing one is reported, not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub secrets: Vec<SecretMount>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": format!(
        "(has(self.terminationGracePeriodSeconds) ? self.terminationGracePeriodSeconds : {DEFAULT_GRACE_SECONDS}) > \
         (has(self.preStopDelaySeconds) ? self.preStopDelaySeconds : {DEFAULT_PRE_STOP_SECONDS}) + {}",
        DRAIN_DELAY_MS / 1000
    ),
    "message": GRACE_TOO_SHORT
}]))]
pub struct DeploymentSettings {
    /// Guard pods when autoscaling is off [default: 3].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// [default: requests 100m CPU / 128Mi, limits 1 CPU / 256Mi]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// [default: 30]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5))]
    pub termination_grace_period_seconds: Option<i64>,
    /// Sleep in preStop so endpoints drop the pod before it stops [default: 5].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 60))]
    pub pre_stop_delay_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas", "message": MIN_ABOVE_MAX}
]))]
pub struct AutoscalingSettings {
    /// [default: 3]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// [default: 70] Spelled as in the HorizontalPodAutoscaler's own API.
    #[serde(default, rename = "targetCPUUtilizationPercentage", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSettings {
    /// IAM role for IRSA: becomes the `eks.amazonaws.com/role-arn` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSettings {
    /// Labels for the PrometheusRule and ServiceMonitor, such as `release: <name>`, which
    /// kube-prometheus-stack selects on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// P1 alert when security debt grows faster than this many points per second over
    /// 5 minutes [default: 10].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debt_alert_threshold: Option<f64>,
    /// Render the Grafana dashboard ConfigMap [default: true].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.controller != 'alb' || has(self.wafAclArn)", "message": ALB_NEEDS_WAF}
]))]
pub struct IngressSettings {
    pub host: String,
    pub controller: IngressController,
    /// Requests per second per client address at the edge.
    #[schemars(range(min = 1))]
    pub requests_per_second: i32,
    /// TLS Secret for `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// ALB only: the WAF web ACL holding the rate-based rule (the ALB itself cannot
    /// rate-limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf_acl_arn: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum IngressController {
    /// ingress-nginx: `nginx.ingress.kubernetes.io/limit-rps` and friends.
    Nginx,
    /// AWS Load Balancer Controller: a WAF rate-based rule is referenced by annotation.
    Alb,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretMount {
    pub name: String,
    pub mount_path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/desired`, for `kubectl get guardrails`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_summary: Option<String>,
    /// The limiter backend, for `kubectl get guardrails`: `local` or `redis/<mode>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Hash of the rendered guard config the pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
