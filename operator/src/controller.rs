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
use crate::resources::{self, Absent, Owned, content_hash, guard_name};
use crate::status::{self, ConditionType, Fleet, Reason, Wanted};
use crate::validate::{self, Invalid};

/// Annotation with the hash of what the operator last applied to an object; equal hash,
/// no write, so an unchanged policy costs reads only.
pub const APPLIED_HASH: &str = "guardrails.godel.dev/applied-hash";

const MONITORING_GROUP: &str = "monitoring.coreos.com/v1";

/// What every phase of one pass works on: the policy, where it lives, and the shared
/// context.
struct Scope<'a> {
    policy: &'a GuardrailPolicy,
    ctx: &'a Context,
    ns: String,
    policies: Api<GuardrailPolicy>,
}

impl Scope<'_> {
    fn api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.ctx.client.clone(), &self.ns, resource)
    }

    /// The key of an owned object in [`Context::seen`].
    fn seen_key(&self, resource: &ApiResource, name: &str) -> String {
        format!("{}/{}/{name}", self.ns, resource.kind)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.ctx.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn publish(&self, type_: EventType, reason: Reason, note: String) {
        let event = Event {
            type_,
            reason: reason.as_str().into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder().publish(&event, &self.policy.object_ref(&())).await {
            tracing::warn!(error = %e, "event not recorded");
        }
    }
}

/// What one pass did: when to look again, and the reason the spec could not be applied.
pub struct Pass {
    pub action: Action,
    pub invalid: Option<Reason>,
}

/// One reconcile pass for one policy: check, plan, write, observe, report. A spec that
/// fails a check, or an object the API server refuses, leaves the running fleet as it
/// is and is reported instead (`degrade`).
pub async fn apply(policy: &GuardrailPolicy, ctx: &Context, now: Time) -> Result<Pass, Error> {
    let ns = policy.namespace().ok_or(Error::MissingNamespace)?;
    // A policy being deleted (foreground) waits for the garbage collector to remove
    // what it owns: putting those back would keep it from ever going.
    if policy.metadata.deletion_timestamp.is_some() {
        return Ok(Pass { action: Action::await_change(), invalid: None });
    }
    let policies = Api::namespaced(ctx.client.clone(), &ns);
    let scope = Scope { policy, ctx, ns, policies };
    let secrets_hash = match check(&scope).await? {
        Ok(hash) => hash,
        Err(invalid) => return degrade(&scope, invalid, now).await,
    };
    let monitoring = monitoring_available(&ctx.client).await?;
    let plan = resources::plan(policy, &secrets_hash, monitoring)?;
    if let Err(invalid) = write(&scope, plan.apply, plan.absent).await? {
        return degrade(&scope, invalid, now).await;
    }
    let fleet = observe(&scope, monitoring).await?;
    report(&scope, fleet, plan.config.hash, now).await
}

/// Check: the spec passes every check that needs no API call, and its Secrets exist;
/// the referenced Secrets' versions, hashed, so a change to one rolls the pods.
async fn check(scope: &Scope<'_>) -> Result<Result<String, Invalid>, Error> {
    match validate::spec(scope.policy) {
        Ok(()) => secrets_hash(scope).await,
        Err(invalid) => Ok(Err(invalid)),
    }
}

/// Versions of the referenced Secrets (metadata only), or which one is missing.
async fn secrets_hash(scope: &Scope<'_>) -> Result<Result<String, Invalid>, Error> {
    let policy = scope.policy;
    if policy.spec.secrets.is_empty() {
        return Ok(Ok("none".into()));
    }
    let api: Api<Secret> = Api::namespaced(scope.ctx.client.clone(), &scope.ns);
    let mut versions = String::new();
    for mount in &policy.spec.secrets {
        let Some(meta) = api.get_metadata_opt(&mount.name).await? else {
            let message = format!("spec.secrets: Secret {}/{} does not exist", scope.ns, mount.name);
            return Ok(Err(Invalid { reason: Reason::SecretNotFound, message }));
        };
        versions.push_str(&format!("{}={};", mount.name, meta.resource_version().unwrap_or_default()));
    }
    Ok(Ok(content_hash(versions.as_bytes())))
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

/// Write: what differs from the cluster, checked whole by a dry run, then applied, and
/// what the policy no longer asks for deleted; one Event for what was written, one for
/// what was put back.
async fn write(scope: &Scope<'_>, apply: Vec<Owned>, absent: Vec<Absent>) -> Result<Result<(), Invalid>, Error> {
    let writes = writes(scope, apply).await?;
    if let Err(invalid) = dry_run(scope, &writes).await? {
        return Ok(Err(invalid));
    }
    let mut written = match put(scope, writes).await? {
        Ok(written) => written,
        Err(invalid) => return Ok(Err(invalid)),
    };
    written.extend(prune(scope, absent).await?);
    if !written.is_empty() {
        let (policy, ns) = (scope.policy.name_any(), &scope.ns);
        tracing::info!(%policy, namespace = %ns, objects = ?written, "applied");
        scope.publish(EventType::Normal, Reason::Applied, format!("applied {}", written.join(", "))).await;
    }
    Ok(Ok(()))
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
async fn writes(scope: &Scope<'_>, objects: Vec<Owned>) -> Result<Vec<Write>, Error> {
    let mut out = Vec::new();
    for mut owned in objects {
        let hash = content_hash(&serde_json::to_vec(&owned.object)?);
        owned.object.annotations_mut().insert(APPLIED_HASH.into(), hash.clone());
        let live = scope.api(&owned.resource).get_opt(&owned.name()).await?;
        let seen = {
            let key = scope.seen_key(&owned.resource, &owned.name());
            let mut seen = scope.seen();
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

/// Every new write is first checked by the API server, so an object it refuses leaves
/// the whole fleet as it was rather than half-applied.
async fn dry_run(scope: &Scope<'_>, writes: &[Write]) -> Result<Result<(), Invalid>, Error> {
    let params = PatchParams { dry_run: true, ..PatchParams::apply(MANAGER).force() };
    for Write { owned, .. } in writes.iter().filter(|w| matches!(w.why, Why::Changed)) {
        if let Err(e) = scope.api(&owned.resource).patch(&owned.name(), &params, &Patch::Apply(&owned.object)).await {
            let Some(message) = refused(&e) else { return Err(e.into()) };
            return Ok(Err(rejected(owned, message)));
        }
    }
    Ok(Ok(()))
}

/// Applies each write; what was written, for the `Applied` Event. Drift put back is
/// logged, counted and reported as `DriftCorrected` here.
async fn put(scope: &Scope<'_>, writes: Vec<Write>) -> Result<Result<Vec<String>, Invalid>, Error> {
    let mut written = Vec::new();
    let mut corrected = Vec::new();
    for Write { owned, live, why } in writes {
        let api = scope.api(&owned.resource);
        if owned.resource.kind == "Deployment"
            && owned.object.data.pointer("/spec/replicas").is_none()
            && let Some(live) = &live
            && owns_replicas(live)
        {
            hand_over_replicas(&api, live).await?;
        }
        let params = PatchParams::apply(MANAGER).force();
        let after = match api.patch(&owned.name(), &params, &Patch::Apply(&owned.object)).await {
            Ok(after) => after,
            Err(e) => {
                let Some(message) = refused(&e) else { return Err(e.into()) };
                return Ok(Err(rejected(&owned, message)));
            }
        };
        scope.seen().insert(scope.seen_key(&owned.resource, &owned.name()));
        match why {
            Why::Changed => written.push(owned.describe()),
            // A value the API server normalizes (a quantity written as "1000m") looks
            // changed but applies as it was: only a new version is a correction.
            Why::Drifted(fields) if after.resource_version() != live.as_ref().and_then(|l| l.resource_version()) => {
                corrected.push(format!("{} ({})", owned.describe(), fields.join(", ")));
                scope.ctx.metrics.drift(&owned.resource.kind);
            }
            Why::Drifted(_) => {}
            Why::Deleted => {
                corrected.push(format!("{} (deleted)", owned.describe()));
                scope.ctx.metrics.drift(&owned.resource.kind);
            }
        }
    }
    if !corrected.is_empty() {
        let (policy, ns) = (scope.policy.name_any(), &scope.ns);
        tracing::warn!(%policy, namespace = %ns, objects = ?corrected, "drift corrected");
        let note = format!("put back {}", corrected.join("; "));
        scope.publish(EventType::Warning, Reason::DriftCorrected, note).await;
    }
    Ok(Ok(written))
}

/// Deletes what the policy no longer asks for; what was deleted.
async fn prune(scope: &Scope<'_>, absent: Vec<Absent>) -> Result<Vec<String>, Error> {
    let mut removed = Vec::new();
    for Absent { resource, name } in absent {
        scope.seen().remove(&scope.seen_key(&resource, &name));
        let api = scope.api(&resource);
        if api.get_metadata_opt(&name).await?.is_some() {
            api.delete(&name, &DeleteParams::background()).await?;
            removed.push(format!("{} {name} (removed)", resource.kind));
        }
    }
    Ok(removed)
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

fn rejected(owned: &Owned, message: String) -> Invalid {
    Invalid { reason: Reason::ApplyRejected, message: format!("{}: {message}", owned.describe()) }
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

/// Observe: the fleet's Deployment as the Deployment controller reports it.
async fn observe(scope: &Scope<'_>, monitoring: bool) -> Result<Fleet, Error> {
    let deployments = Api::<Deployment>::namespaced(scope.ctx.client.clone(), &scope.ns);
    let live = deployments.get_opt(&guard_name(scope.policy)).await?;
    let status = live.as_ref().and_then(|d| d.status.clone()).unwrap_or_default();
    Ok(Fleet {
        desired: status::required_ready(&scope.policy.spec, live.as_ref().and_then(|d| d.spec.replicas)),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        rollout_observed: status.observed_generation >= live.as_ref().and_then(|d| d.metadata.generation),
        monitoring,
    })
}

/// Report: the status of an applied policy, and `FleetReady` when it becomes ready.
async fn report(scope: &Scope<'_>, fleet: Fleet, config_hash: String, now: Time) -> Result<Pass, Error> {
    let policy = scope.policy;
    let previous = policy.status.clone().unwrap_or_default();
    let (fleet_ready, summary) = (fleet.ready(), fleet.summary());
    let conditions = status::build(status::applied(&fleet), &previous.conditions, policy.metadata.generation, now);
    if fleet_ready && !was(policy, ConditionType::Ready, "True") {
        scope.publish(EventType::Normal, Reason::FleetReady, format!("{summary} guards ready")).await;
    }
    let next = GuardrailPolicyStatus {
        observed_generation: policy.metadata.generation,
        replicas: fleet.desired,
        ready_replicas: fleet.ready,
        replica_summary: Some(summary),
        mode: Some(status::mode(policy)),
        config_hash: Some(config_hash),
        conditions,
    };
    write_status(scope, next).await?;
    let action = Action::requeue(if fleet_ready { Duration::from_secs(300) } else { Duration::from_secs(15) });
    Ok(Pass { action, invalid: None })
}

fn was(policy: &GuardrailPolicy, type_: ConditionType, status: &str) -> bool {
    let conditions = policy.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == type_.as_str() && c.status == status)
}

async fn write_status(scope: &Scope<'_>, next: GuardrailPolicyStatus) -> Result<(), Error> {
    let policy = scope.policy;
    if status::changed(policy.status.as_ref(), &next) {
        // The version this pass read: a pass that ran on a stale copy (the cache had not
        // caught up with the last status write) is refused with a conflict and retried on
        // a fresh one, instead of writing transition times from the past.
        let patch = json!({"metadata": {"resourceVersion": policy.resource_version()}, "status": next});
        scope.policies.patch_status(&policy.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

/// Reports a spec that cannot be applied and leaves the running fleet exactly as it is;
/// the Event is recorded once per reason.
async fn degrade(scope: &Scope<'_>, invalid: Invalid, now: Time) -> Result<Pass, Error> {
    let policy = scope.policy;
    let previous = policy.status.clone().unwrap_or_default();
    let degraded_before = previous.conditions.iter().any(|c| {
        c.type_ == ConditionType::Degraded.as_str() && c.status == "True" && c.reason == invalid.reason.as_str()
    });
    let wanted = |type_, status, message| Wanted { type_, status, reason: invalid.reason, message };
    let conditions = status::build(
        vec![
            wanted(ConditionType::Ready, false, invalid.message.clone()),
            wanted(ConditionType::Progressing, false, "spec not applied".into()),
            wanted(ConditionType::Degraded, true, invalid.message.clone()),
        ],
        &previous.conditions,
        policy.metadata.generation,
        now,
    );
    let next = GuardrailPolicyStatus { observed_generation: policy.metadata.generation, conditions, ..previous };
    write_status(scope, next).await?;
    if !degraded_before {
        scope.publish(EventType::Warning, invalid.reason, invalid.message).await;
    }
    Ok(Pass { action: Action::requeue(Duration::from_secs(300)), invalid: Some(invalid.reason) })
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
        Ok(Pass { invalid: Some(reason), .. }) => ctx.metrics.count("invalid", reason.as_str()),
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
