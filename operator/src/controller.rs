//! The reconciler, after kube-rs's controller-rs: level-based and idempotent. Each pass
//! computes the desired objects with the pure functions of `resources`, writes only what
//! differs from what the cluster holds (server-side apply, one field manager, every
//! object owned by the policy), and reports status and Events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use godel_crds::{GuardrailPolicy, GuardrailPolicyStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::context::{Context, MANAGER};
use crate::drift;
use crate::error::Error;
use crate::resources::{self, Desired, OwnedKind, content_hash, guard_name};
use crate::status::{self, DEGRADED, Fleet, PROGRESSING, READY, Wanted};
use crate::validate::{self, Invalid};

/// Annotation with the hash of what the operator last applied to an object; equal hash,
/// no write, so an unchanged policy costs reads only.
pub const APPLIED_HASH: &str = "guardrails.godel.dev/applied-hash";

const MONITORING_GROUP: &str = "monitoring.coreos.com/v1";

/// One object the policy asks for, as the API server will receive it.
struct Owned {
    kind: &'static OwnedKind,
    resource: ApiResource,
    object: DynamicObject,
}

impl Owned {
    fn api(&self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource)
    }

    fn name(&self) -> String {
        self.object.name_any()
    }

    fn describe(&self) -> String {
        format!("{} {}", self.resource.kind, self.name())
    }

    fn key(&self, ns: &str) -> String {
        format!("{ns}/{}/{}", self.resource.kind, self.name())
    }
}

/// The policy's desired state (the plan `godel-operator render` prints), split for
/// applying: the rendered config's hash, the objects to apply in order as the API server
/// will receive them, and the objects to delete.
struct Split {
    config_hash: String,
    apply: Vec<Owned>,
    absent: Vec<(&'static OwnedKind, String)>,
}

fn desired(policy: &GuardrailPolicy, secrets_hash: &str, monitoring: bool) -> Result<Split, Error> {
    let plan = resources::desired(policy, secrets_hash, monitoring)?;
    let mut split = Split { config_hash: plan.config.hash, apply: Vec::new(), absent: Vec::new() };
    for entry in plan.objects {
        match entry {
            Desired::Present(value) => {
                let object: DynamicObject = serde_json::from_value(value)?;
                let kind =
                    object.types.as_ref().and_then(|t| resources::owned_kind(&t.kind)).ok_or(Error::UnownedKind)?;
                split.apply.push(Owned { kind, resource: kind.api_resource(), object });
            }
            Desired::Absent { kind, name } => split.absent.push((kind, name)),
        }
    }
    Ok(split)
}

/// Why an object is written this pass.
enum Why {
    /// The policy asks for something new (its hash is not on the live copy).
    Changed,
    /// Someone changed fields the operator set, named here; put back.
    Drifted(Vec<String>),
    /// It was deleted after the operator created it for this generation; recreated.
    Deleted,
}

struct Write {
    owned: Owned,
    live: Option<DynamicObject>,
    why: Why,
}

/// The objects to write, each stamped with the hash of what we apply: those whose live
/// copy lacks that hash, and those that carry it but were changed or deleted since (drift,
/// put back on this pass). An unchanged world costs reads only.
async fn writes(ctx: &Context, ns: &str, objects: Vec<Owned>) -> Result<Vec<Write>, Error> {
    let mut out = Vec::new();
    for mut owned in objects {
        let hash = content_hash(&serde_json::to_vec(&owned.object)?);
        owned.object.annotations_mut().insert(APPLIED_HASH.into(), hash.clone());
        let live = owned.api(&ctx.client, ns).get_opt(&owned.name()).await?;
        let seen = {
            let mut seen = ctx.seen.lock().unwrap_or_else(|e| e.into_inner());
            let key = owned.key(ns);
            if live.is_some() { !seen.insert(key) } else { seen.contains(&key) }
        };
        let why = match &live {
            None if seen => Why::Deleted,
            None => Why::Changed,
            Some(l) if l.annotations().get(APPLIED_HASH) != Some(&hash) => Why::Changed,
            Some(l) => {
                let fields = drift::drifted(&serde_json::to_value(&owned.object)?, &serde_json::to_value(l)?);
                if fields.is_empty() {
                    continue;
                }
                Why::Drifted(fields)
            }
        };
        out.push(Write { owned, live, why });
    }
    Ok(out)
}

/// Whether the API server refused the object itself (schema, immutable field, a
/// malformed quantity, two volumes on one mount path), as opposed to failing to answer.
/// Server-side apply reports some of these as a 500 rather than a 422 (a quantity it
/// cannot parse: "failed to convert"; a list with two entries for one key: "failed to
/// create typed patch object"): those too are the object's fault, and retrying will not
/// change the answer. Only transport errors, conflicts and other 5xx are retried.
fn refused(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(status) if matches!(status.code, 400 | 413 | 422) => Some(status.message.clone()),
        kube::Error::Api(status)
            if status.code == 500
                && ["failed to convert", "failed to create typed patch object"]
                    .iter()
                    .any(|m| status.message.contains(m)) =>
        {
            Some(status.message.clone())
        }
        _ => None,
    }
}

/// Whether the operator's apply owns the live Deployment's `spec.replicas`.
fn owns_replicas(live: &DynamicObject) -> bool {
    live.metadata.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry.fields_v1.as_ref().and_then(|f| f.0.pointer("/f:spec/f:replicas")).is_some()
    })
}

/// When autoscaling is switched on, the operator's apply stops setting `replicas`; if it
/// owned the field alone, the API server would reset it to 1 until the HPA reacts. A
/// second field manager first takes shared ownership at the live value, so releasing
/// ours keeps the fleet's size and the HPA takes over from there.
async fn hand_over_replicas(api: &Api<DynamicObject>, live: &DynamicObject) -> Result<(), Error> {
    let Some(replicas) = live.data.pointer("/spec/replicas").cloned() else { return Ok(()) };
    let patch = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": live.name_any()},
                       "spec": {"replicas": replicas}});
    api.patch(&live.name_any(), &PatchParams::apply(HANDOVER_MANAGER), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Field manager that holds `spec.replicas` between the operator and the autoscaler.
pub const HANDOVER_MANAGER: &str = "godel-operator-replicas-handover";

fn rejected(owned: &Owned, message: String) -> Invalid {
    Invalid { reason: "ApplyRejected", message: format!("{}: {message}", owned.describe()) }
}

/// Deletes an object the policy no longer asks for. Returns whether it deleted.
async fn remove(client: &Client, ns: &str, resource: &ApiResource, name: &str) -> Result<bool, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    if api.get_metadata_opt(name).await?.is_none() {
        return Ok(false);
    }
    api.delete(name, &DeleteParams::background()).await?;
    Ok(true)
}

/// Whether prometheus-operator's kinds exist: discovery needs no extra RBAC.
async fn monitoring_available(client: &Client) -> Result<bool, Error> {
    match client.list_api_group_resources(MONITORING_GROUP).await {
        Ok(list) => {
            let names: Vec<&str> = list.resources.iter().map(|r| r.name.as_str()).collect();
            Ok(names.contains(&"prometheusrules") && names.contains(&"servicemonitors"))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Versions of the referenced Secrets (metadata only), or which one is missing.
async fn secrets_hash(policy: &GuardrailPolicy, client: &Client, ns: &str) -> Result<Result<String, Invalid>, Error> {
    if policy.spec.secrets.is_empty() {
        return Ok(Ok("none".into()));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut versions = String::new();
    for mount in &policy.spec.secrets {
        match api.get_metadata_opt(&mount.name).await? {
            Some(meta) => {
                versions.push_str(&format!("{}={};", mount.name, meta.resource_version().unwrap_or_default()))
            }
            None => {
                return Ok(Err(Invalid {
                    reason: "SecretNotFound",
                    message: format!("spec.secrets: Secret {ns}/{} does not exist", mount.name),
                }));
            }
        }
    }
    Ok(Ok(content_hash(versions.as_bytes())))
}

async fn publish(ctx: &Context, policy: &GuardrailPolicy, type_: EventType, reason: &str, note: String) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder().publish(&event, &policy.object_ref(&())).await {
        tracing::warn!(error = %e, "event not recorded");
    }
}

async fn write_status(
    api: &Api<GuardrailPolicy>,
    policy: &GuardrailPolicy,
    next: GuardrailPolicyStatus,
) -> Result<(), Error> {
    if status::changed(policy.status.as_ref(), &next) {
        // The version this pass read: a pass that ran on a stale copy (the cache had not
        // caught up with the last status write) is refused with a conflict and retried on
        // a fresh one, instead of writing transition times from the past.
        let patch = json!({"metadata": {"resourceVersion": policy.resource_version()}, "status": next});
        api.patch_status(&policy.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

/// Reports a spec that cannot be applied and leaves the running fleet exactly as it is;
/// the Event is recorded once per reason.
async fn degrade(
    ctx: &Context,
    policy: &GuardrailPolicy,
    policies: &Api<GuardrailPolicy>,
    invalid: Invalid,
    now: Time,
) -> Result<Pass, Error> {
    let previous = policy.status.clone().unwrap_or_default();
    let degraded_before =
        previous.conditions.iter().any(|c| c.type_ == DEGRADED && c.status == "True" && c.reason == invalid.reason);
    let conditions = status::build(
        vec![
            Wanted { type_: READY, status: false, reason: invalid.reason, message: invalid.message.clone() },
            Wanted { type_: PROGRESSING, status: false, reason: invalid.reason, message: "spec not applied".into() },
            Wanted { type_: DEGRADED, status: true, reason: invalid.reason, message: invalid.message.clone() },
        ],
        &previous.conditions,
        policy.metadata.generation,
        now,
    );
    let next = GuardrailPolicyStatus { observed_generation: policy.metadata.generation, conditions, ..previous };
    write_status(policies, policy, next).await?;
    if !degraded_before {
        publish(ctx, policy, EventType::Warning, invalid.reason, invalid.message).await;
    }
    Ok(Pass { action: Action::requeue(Duration::from_secs(300)), invalid: Some(invalid.reason) })
}

/// What one pass did: when to look again, and the reason the spec could not be applied.
pub struct Pass {
    pub action: Action,
    pub invalid: Option<&'static str>,
}

fn was(policy: &GuardrailPolicy, type_: &str, status: &str) -> bool {
    policy.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == status))
}

/// One reconcile pass for one policy.
pub async fn apply(policy: &GuardrailPolicy, ctx: &Context, now: Time) -> Result<Pass, Error> {
    let ns = policy.namespace().ok_or(Error::MissingNamespace)?;
    // A policy being deleted (foreground) waits for the garbage collector to remove
    // what it owns: putting those back would keep it from ever going.
    if policy.metadata.deletion_timestamp.is_some() {
        return Ok(Pass { action: Action::await_change(), invalid: None });
    }
    let client = &ctx.client;
    let policies: Api<GuardrailPolicy> = Api::namespaced(client.clone(), &ns);
    let generation = policy.metadata.generation;
    let previous = policy.status.clone().unwrap_or_default();

    let check = match validate::spec(policy) {
        Ok(()) => secrets_hash(policy, client, &ns).await?,
        Err(invalid) => Err(invalid),
    };
    let secrets_hash = match check {
        Ok(hash) => hash,
        Err(invalid) => return degrade(ctx, policy, &policies, invalid, now).await,
    };

    let monitoring = monitoring_available(client).await?;
    let Split { config_hash, apply: owned, absent } = desired(policy, &secrets_hash, monitoring)?;
    let writes = writes(ctx, &ns, owned).await?;
    // Every new write is first checked by the API server (dry run), so an object it
    // refuses leaves the whole fleet as it was rather than half-applied.
    for Write { owned, .. } in writes.iter().filter(|w| matches!(w.why, Why::Changed)) {
        let dry_run = PatchParams { dry_run: true, ..PatchParams::apply(MANAGER).force() };
        if let Err(e) = owned.api(client, &ns).patch(&owned.name(), &dry_run, &Patch::Apply(&owned.object)).await {
            let Some(message) = refused(&e) else { return Err(e.into()) };
            return degrade(ctx, policy, &policies, rejected(owned, message), now).await;
        }
    }
    let mut written: Vec<String> = Vec::new();
    let mut corrected: Vec<String> = Vec::new();
    for Write { owned, live, why } in &writes {
        if owned.resource.kind == "Deployment"
            && owned.object.data.pointer("/spec/replicas").is_none()
            && let Some(live) = live
            && owns_replicas(live)
        {
            hand_over_replicas(&owned.api(client, &ns), live).await?;
        }
        let params = PatchParams::apply(MANAGER).force();
        let after = match owned.api(client, &ns).patch(&owned.name(), &params, &Patch::Apply(&owned.object)).await {
            Ok(after) => after,
            Err(e) => {
                let Some(message) = refused(&e) else { return Err(e.into()) };
                return degrade(ctx, policy, &policies, rejected(owned, message), now).await;
            }
        };
        ctx.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(owned.key(&ns));
        match why {
            Why::Changed => written.push(owned.describe()),
            // A value the API server normalizes (a quantity written as "1000m") looks
            // changed but applies as it was: only a new version is a correction.
            Why::Drifted(fields) if after.resource_version() != live.as_ref().and_then(|l| l.resource_version()) => {
                corrected.push(format!("{} ({})", owned.describe(), fields.join(", ")));
                ctx.metrics.drift(owned.kind.kind);
            }
            Why::Drifted(_) => {}
            Why::Deleted => {
                corrected.push(format!("{} (deleted)", owned.describe()));
                ctx.metrics.drift(owned.kind.kind);
            }
        }
    }
    if !corrected.is_empty() {
        tracing::warn!(policy = %policy.name_any(), namespace = %ns, objects = ?corrected, "drift corrected");
        let note = format!("put back {}", corrected.join("; "));
        publish(ctx, policy, EventType::Warning, "DriftCorrected", note).await;
    }
    for (kind, name) in absent {
        ctx.seen.lock().unwrap_or_else(|e| e.into_inner()).remove(&format!("{ns}/{}/{name}", kind.kind));
        if remove(client, &ns, &kind.api_resource(), &name).await? {
            written.push(format!("{} {name} (removed)", kind.kind));
        }
    }
    if !written.is_empty() {
        tracing::info!(policy = %policy.name_any(), namespace = %ns, objects = ?written, "applied");
        publish(ctx, policy, EventType::Normal, "Applied", format!("applied {}", written.join(", "))).await;
    }

    let name = guard_name(policy);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let live = deployments.get_opt(&name).await?;
    let desired = status::desired(&policy.spec, live.as_ref().and_then(|d| d.spec.replicas));
    let live_status = live.as_ref().and_then(|d| d.status.clone()).unwrap_or_default();
    let fleet = Fleet {
        desired,
        ready: live_status.ready_replicas.unwrap_or(0),
        updated: live_status.updated_replicas.unwrap_or(0),
        rollout_observed: live_status.observed_generation >= live.as_ref().and_then(|d| d.metadata.generation),
        monitoring,
    };
    let fleet_ready = fleet.ready();
    let (ready, summary) = (fleet.ready, fleet.summary());
    let conditions = status::build(status::applied(&fleet), &previous.conditions, generation, now);
    if fleet_ready && !was(policy, READY, "True") {
        publish(ctx, policy, EventType::Normal, "FleetReady", format!("{summary} guards ready")).await;
    }
    let next = GuardrailPolicyStatus {
        observed_generation: generation,
        replicas: desired,
        ready_replicas: ready,
        replica_summary: Some(summary),
        mode: Some(status::mode(policy)),
        config_hash: Some(config_hash),
        conditions,
    };
    write_status(&policies, policy, next).await?;
    let action = Action::requeue(if fleet_ready { Duration::from_secs(300) } else { Duration::from_secs(15) });
    Ok(Pass { action, invalid: None })
}

fn key(policy: &GuardrailPolicy) -> String {
    format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any())
}

#[tracing::instrument(skip_all, fields(policy = %key(&policy), generation = policy.metadata.generation))]
pub async fn reconcile(policy: Arc<GuardrailPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let result = apply(&policy, &ctx, now).await;
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(Pass { invalid: None, .. }) => ctx.metrics.count("ok", ""),
        Ok(Pass { invalid: Some(reason), .. }) => ctx.metrics.count("invalid", reason),
        Err(e) => ctx.metrics.count("error", e.kind()),
    }
    if result.is_ok() {
        ctx.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(&policy));
    }
    result.map(|pass| pass.action)
}

/// Retries with exponential backoff per policy: 5 s, 10 s, 20 s … capped at 5 minutes.
pub fn error_policy(policy: Arc<GuardrailPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(key(&policy)).or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_secs((5u64 << (*n - 1).min(6)).min(300));
    tracing::warn!(policy = %key(&policy), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller until SIGTERM.
pub async fn run(client: Client, ctx: Arc<Context>) {
    let mut controller = Controller::new(Api::<GuardrailPolicy>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    // /readyz turns ready once the policy cache holds the cluster's policies.
    let (synced, policies) = (ctx.metrics.synced.clone(), store.clone());
    tokio::spawn(async move {
        if policies.wait_until_ready().await.is_ok() {
            synced.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!("watch caches synced");
        }
    });
    // Owned objects, selected by label so the caches hold only what the operator wrote:
    // a Deployment's rollout updates the status, and an object edited or deleted by hand
    // is put back by the pass its change wakes (`DriftCorrected`).
    let owned = || watcher::Config::default().labels("app.kubernetes.io/managed-by=godel-operator");
    for kind in resources::OWNED_KINDS.iter().filter(|k| k.watched) {
        let resource = kind.api_resource();
        controller = controller.owns_with(Api::<DynamicObject>::all_with(client.clone(), &resource), resource, owned());
    }
    controller
        // Secrets are watched by metadata only: thousands of Secrets cost their
        // metadata, not their data. A change to a referenced one rolls its policy's pods.
        .watches(Api::<PartialObjectMeta<Secret>>::all(client.clone()), watcher::Config::default(), move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|p| p.namespace() == ns && p.spec.secrets.iter().any(|s| s.name == name))
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}
