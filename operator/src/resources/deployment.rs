use godel_crds::{DEFAULT_IMAGE, DRAIN_DELAY_MS, GuardrailPolicy};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::configmap::{CONFIG_FILE, FLEET_SIZE_KEY};
use super::{
    GUARD_PORT, GuardConfigFile, content_hash, guard_name, labels, metadata, selector_labels, service_account,
};

/// Pod-template annotation with the rendered config's hash: a config change rolls pods.
pub const CONFIG_HASH_ANNOTATION: &str = "guardrails.godel.dev/config-hash";
/// Pod-template annotation with the referenced Secrets' versions: a rotation rolls pods.
pub const SECRETS_HASH_ANNOTATION: &str = "guardrails.godel.dev/secrets-hash";
/// Pod-template annotation with the ServiceAccount's annotations (the IRSA role): EKS's
/// webhook reads the role only when a pod is created, so a changed role must roll pods.
pub const IDENTITY_HASH_ANNOTATION: &str = "guardrails.godel.dev/identity-hash";

/// Where the ConfigMap is mounted; the fleet reads its config from here.
pub const CONFIG_DIR: &str = "/etc/godel";
/// The distroless "nonroot" user.
const NONROOT: i64 = 65532;

/// The guard fleet, following the production checklist: probes on `/health` and
/// `/livez`, a preStop pause then the guard's own drain inside the grace period,
/// non-root read-only containers, resources, and spread across zones and nodes.
/// `secrets_hash` summarizes the referenced Secrets' versions.
pub fn deployment(policy: &GuardrailPolicy, config: &GuardConfigFile, secrets_hash: &str) -> Deployment {
    let settings = &policy.spec.deployment;
    let grace = settings.termination_grace_period_seconds();
    let pre_stop = settings.pre_stop_delay_seconds();
    // After the preStop pause the endpoints are gone; keep one more second of drain
    // and leave the rest of the grace period for in-flight requests.
    let shutdown_timeout_ms = ((grace - pre_stop - 2).max(1) * 1000).to_string();

    let mut annotations = settings.pod_annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config.hash.clone());
    annotations.insert(SECRETS_HASH_ANNOTATION.into(), secrets_hash.to_owned());
    let identity = service_account(policy).metadata.annotations.unwrap_or_default();
    annotations.insert(
        IDENTITY_HASH_ANNOTATION.into(),
        content_hash(serde_json::to_string(&identity).unwrap_or_default().as_bytes()),
    );
    annotations.insert("prometheus.io/scrape".into(), "true".into());
    annotations.insert("prometheus.io/port".into(), GUARD_PORT.to_string());

    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource { name: guard_name(policy), ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    for (i, secret) in policy.spec.secrets.iter().enumerate() {
        let name = format!("secret-{i}");
        volumes.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: secret.mount_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let spread = |key: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector { match_labels: Some(selector_labels(policy)), ..LabelSelector::default() }),
        ..TopologySpreadConstraint::default()
    };

    let container = Container {
        name: "guard".into(),
        image: Some(settings.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.to_owned())),
        args: Some(
            [
                "serve",
                "--listen",
                &format!("0.0.0.0:{GUARD_PORT}"),
                "--config",
                &format!("{CONFIG_DIR}/{CONFIG_FILE}"),
                "--production",
                "--drain-delay-ms",
                &DRAIN_DELAY_MS.to_string(),
                "--shutdown-timeout-ms",
                &shutdown_timeout_ms,
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(vec![
            EnvVar { name: "RUST_LOG".into(), value: Some("info".into()), ..EnvVar::default() },
            EnvVar {
                name: "GODEL_FLEET_SIZE".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: guard_name(policy),
                        key: FLEET_SIZE_KEY.into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: GUARD_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe("/health", 5, 2)),
        liveness_probe: Some(probe("/livez", 10, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: pre_stop }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(settings.resources()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    Deployment {
        metadata: metadata(policy, guard_name(policy)),
        spec: DeploymentSpec {
            // With an autoscaler the HPA owns the count; leaving the field out of our
            // apply keeps the two from fighting over it.
            replicas: policy.spec.autoscaling.is_none().then(|| policy.spec.desired_replicas()),
            selector: LabelSelector { match_labels: Some(selector_labels(policy)), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(policy)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(guard_name(policy)),
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(grace),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NONROOT),
                        run_as_group: Some(NONROOT),
                        fs_group: Some(NONROOT),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    topology_spread_constraints: Some(vec![
                        spread("topology.kubernetes.io/zone"),
                        spread("kubernetes.io/hostname"),
                    ]),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    fn render(policy: &GuardrailPolicy, secrets_hash: &str) -> Deployment {
        deployment(policy, &GuardConfigFile::render(policy).unwrap(), secrets_hash)
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().unwrap()
    }

    fn pod_annotation(d: &Deployment, key: &str) -> String {
        d.spec.template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[key].clone()
    }

    #[test]
    fn production_checklist_defaults() {
        let d = render(&fixtures::from_yaml("{}"), "none");
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(3));
        let pod = pod(&d);
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        let c = &pod.containers[0];
        let readiness = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/health"));
        let liveness = c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/livez"));
        let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 5);
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.read_only_root_filesystem, sc.run_as_non_root, sc.allow_privilege_escalation),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        let resources = c.resources.as_ref().unwrap();
        assert!(resources.requests.as_ref().unwrap().contains_key("cpu"));
        assert!(resources.limits.as_ref().unwrap().contains_key("memory"));
        let keys: Vec<_> =
            pod.topology_spread_constraints.as_ref().unwrap().iter().map(|t| t.topology_key.as_str()).collect();
        assert!(keys.contains(&"topology.kubernetes.io/zone"));
        assert!(c.args.as_ref().unwrap().contains(&"--production".to_owned()));
        // Shutdown fits in the grace period: preStop 5 s + drain 1 s + in-flight 23 s < 30 s.
        let args = c.args.as_ref().unwrap();
        let timeout: i64 = args[args.iter().position(|a| a == "--shutdown-timeout-ms").unwrap() + 1].parse().unwrap();
        assert!(5_000 + 1_000 + timeout < 30_000);
        assert_eq!(pod.service_account_name.as_deref(), Some("payments-guard"));
    }

    #[test]
    fn config_hash_changes_exactly_when_the_rendered_config_does() {
        let base = fixtures::from_yaml("guard: {defaultTier: free}");
        let same = fixtures::from_yaml("guard: {defaultTier: free}\ndeployment: {image: 'example/guard:2'}");
        let changed = fixtures::from_yaml("guard: {defaultTier: premium}");
        let hash = |p| pod_annotation(&render(p, "none"), CONFIG_HASH_ANNOTATION);
        assert_eq!(hash(&base), hash(&same), "an image change is not a config change");
        assert_ne!(hash(&base), hash(&changed));
        let scaled = fixtures::from_yaml("guard: {defaultTier: free}\ndeployment: {replicas: 5}");
        assert_eq!(hash(&base), hash(&scaled), "resizing the fleet does not roll it");
    }

    #[test]
    fn secrets_are_mounted_and_their_versions_roll_the_pods() {
        let p = fixtures::from_yaml("secrets: [{name: godel-keys, mountPath: /etc/godel/keys}]");
        let d = render(&p, "abc");
        let pod = pod(&d);
        let volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.secret.is_some()).unwrap();
        assert_eq!(volume.secret.as_ref().unwrap().secret_name.as_deref(), Some("godel-keys"));
        assert_ne!(
            pod_annotation(&d, SECRETS_HASH_ANNOTATION),
            pod_annotation(&render(&p, "abd"), SECRETS_HASH_ANNOTATION)
        );
    }

    #[test]
    fn a_changed_iam_role_rolls_the_pods() {
        let hash = |yaml| pod_annotation(&render(&fixtures::from_yaml(yaml), "none"), IDENTITY_HASH_ANNOTATION);
        let one = hash("serviceAccount: {roleArn: 'arn:aws:iam::1:role/a'}");
        assert_ne!(one, hash("serviceAccount: {roleArn: 'arn:aws:iam::1:role/b'}"));
        assert_eq!(one, hash("serviceAccount: {roleArn: 'arn:aws:iam::1:role/a'}\ndeployment: {replicas: 4}"));
    }

    #[test]
    fn autoscaled_fleet_leaves_replicas_to_the_hpa() {
        let p = fixtures::from_yaml("autoscaling: {minReplicas: 2, maxReplicas: 10}");
        assert_eq!(render(&p, "none").spec.replicas, None);
        assert_eq!((p.spec.desired_replicas(), p.spec.max_fleet_size()), (2, 10));
        let defaulted = fixtures::from_yaml("autoscaling: {maxReplicas: 10}");
        assert_eq!(defaulted.spec.desired_replicas(), 3, "the checklist's three pods");
    }
}
