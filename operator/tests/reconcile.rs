//! The reconcile loop against kube's mock service (`tower-test`), as kube-rs projects
//! test controllers without an API server. A small in-memory fake answers the requests
//! (objects by path, discovery, status, events) and records every call, so each test can
//! assert the exact API calls of one reconcile pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use godel_crds::GuardrailPolicy;
use godel_operator::context::Context;
use godel_operator::controller;
use godel_operator::metrics::Metrics;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

const NS_API: &str = "/api/v1/namespaces/shop";
const NS_APPS: &str = "/apis/apps/v1/namespaces/shop";
const POLICY: &str = "/apis/guardrails.godel.dev/v1alpha1/namespaces/shop/guardrailpolicies/payments";

#[derive(Default)]
struct Fake {
    objects: HashMap<String, Value>,
    calls: Vec<String>,
    monitoring: bool,
    next_version: u64,
}

fn not_found() -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    Response::builder().status(StatusCode::NOT_FOUND).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap()
}

fn ok(value: &Value) -> Response<Body> {
    Response::builder().status(StatusCode::OK).body(Body::from(serde_json::to_vec(value).unwrap())).unwrap()
}

impl Fake {
    fn answer(&mut self, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Response<Body> {
        let short = path.strip_prefix("/apis/").or_else(|| path.strip_prefix("/api/")).unwrap_or(path);
        // A dry run is answered as the real server does: checked, returned, not stored.
        if query.is_some_and(|q| q.contains("dryRun=All")) {
            self.calls.push(format!("DRYRUN {method} {short}"));
            return ok(&serde_json::from_slice(body).unwrap());
        }
        self.calls.push(format!("{method} {short}"));
        if path == "/apis/monitoring.coreos.com/v1" {
            return if self.monitoring {
                ok(
                    &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "monitoring.coreos.com/v1", "resources": [
                    {"name": "prometheusrules", "singularName": "prometheusrule", "namespaced": true, "kind": "PrometheusRule", "verbs": ["get", "patch"]},
                    {"name": "servicemonitors", "singularName": "servicemonitor", "namespaced": true, "kind": "ServiceMonitor", "verbs": ["get", "patch"]}]}),
                )
            } else {
                not_found()
            };
        }
        match *method {
            Method::GET => match self.objects.get(path) {
                Some(v) => ok(v),
                None => not_found(),
            },
            Method::PATCH if path.ends_with("/status") => {
                let patch: Value = serde_json::from_slice(body).unwrap();
                let policy = self.objects.get_mut(path.trim_end_matches("/status")).expect("policy stored");
                policy["status"] = patch["status"].clone();
                ok(&policy.clone())
            }
            Method::PATCH => {
                let mut object: Value = serde_json::from_slice(body).unwrap();
                self.next_version += 1;
                object["metadata"]["resourceVersion"] = json!(self.next_version.to_string());
                if let Some(live) = self.objects.get(path) {
                    object["status"] = live["status"].clone();
                }
                self.objects.insert(path.to_owned(), object.clone());
                ok(&object)
            }
            Method::POST => {
                let object: Value = serde_json::from_slice(body).unwrap();
                Response::builder()
                    .status(StatusCode::CREATED)
                    .body(Body::from(serde_json::to_vec(&object).unwrap()))
                    .unwrap()
            }
            Method::DELETE => {
                self.objects.remove(path);
                ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
            }
            _ => panic!("unexpected {method} {path}"),
        }
    }

    /// Calls that change something.
    fn writes(&self) -> Vec<String> {
        self.calls.iter().filter(|c| !c.starts_with("GET ") && !c.starts_with("DRYRUN ")).cloned().collect()
    }
}

struct Harness {
    fake: Arc<Mutex<Fake>>,
    ctx: Arc<Context>,
}

impl Harness {
    fn new(monitoring: bool) -> Self {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = Arc::new(Mutex::new(Fake { monitoring, ..Fake::default() }));
        let served = fake.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let response =
                    served.lock().unwrap().answer(&parts.method, parts.uri.path(), parts.uri.query(), &bytes);
                respond.send_response(response);
            }
        });
        let client = Client::new(service, "default");
        Self { fake, ctx: Arc::new(Context::new(client, Metrics::default())) }
    }

    /// Stores the policy as the API server would hold it, and returns it. Its keys come
    /// from Secret Manager unless the spec says otherwise: the fleet runs `--production`,
    /// and the policy check refuses a policy without keys.
    fn policy(&self, spec: &str) -> GuardrailPolicy {
        let mut spec = serde_yaml::from_str::<Value>(spec).unwrap();
        let gcp = |secret: &str| json!({"gcp": {"secretVersion": format!("projects/p/secrets/{secret}/versions/1")}});
        let guard = spec.as_object_mut().unwrap().entry("guard").or_insert_with(|| json!({}));
        guard
            .as_object_mut()
            .unwrap()
            .entry("audit")
            .or_insert_with(|| json!({"key": gcp("key"), "salt": gcp("salt")}));
        let value = json!({
            "apiVersion": "guardrails.godel.dev/v1alpha1",
            "kind": "GuardrailPolicy",
            "metadata": {"name": "payments", "namespace": "shop", "uid": "0f5e7f3c-1111-4d2e-9a3b-5c6d7e8f9a0b", "generation": 1},
            "spec": spec,
        });
        self.fake.lock().unwrap().objects.insert(POLICY.into(), value.clone());
        serde_json::from_value(value).unwrap()
    }

    /// The policy as stored now (with the status the operator wrote).
    fn stored_policy(&self) -> GuardrailPolicy {
        serde_json::from_value(self.fake.lock().unwrap().objects[POLICY].clone()).unwrap()
    }

    async fn reconcile(&self, policy: &GuardrailPolicy) -> Vec<String> {
        self.fake.lock().unwrap().calls.clear();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let pass = tokio::time::timeout(std::time::Duration::from_secs(10), controller::apply(policy, &self.ctx, now));
        match pass.await {
            Ok(result) => {
                result.expect("reconcile succeeds");
            }
            Err(_) => panic!("reconcile hung after {:#?}", self.fake.lock().unwrap().calls),
        }
        self.fake.lock().unwrap().calls.clone()
    }

    fn writes(&self) -> Vec<String> {
        self.fake.lock().unwrap().writes()
    }

    fn set(&self, path: &str, pointer: &str, value: Value) {
        let mut fake = self.fake.lock().unwrap();
        let object = fake.objects.get_mut(path).unwrap_or_else(|| panic!("{path} is not stored"));
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let parent = object.pointer_mut(parent).unwrap_or_else(|| panic!("{parent} in {path}"));
        parent.as_object_mut().unwrap().insert(field.to_owned(), value);
    }
}

fn condition(policy: &GuardrailPolicy, type_: &str) -> (String, String) {
    let c = policy.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn new_policy_applies_every_object_then_reports_status() {
    let h = Harness::new(false);
    let policy = h.policy("{}");
    let calls = h.reconcile(&policy).await;
    let objects = [
        "v1/namespaces/shop/serviceaccounts/payments-guard",
        "v1/namespaces/shop/configmaps/payments-guard",
        "apps/v1/namespaces/shop/deployments/payments-guard",
        "v1/namespaces/shop/services/payments-guard",
        "policy/v1/namespaces/shop/poddisruptionbudgets/payments-guard",
        "v1/namespaces/shop/configmaps/payments-guard-dashboard",
    ];
    // Read all, check all with a dry run, then write all: a refused object stops the
    // pass before anything changed.
    let mut expected = vec!["GET monitoring.coreos.com/v1".to_owned()];
    for prefix in ["GET", "DRYRUN PATCH", "PATCH"] {
        expected.extend(objects.iter().map(|o| format!("{prefix} {o}")));
    }
    expected.extend(
        [
            "GET autoscaling/v2/namespaces/shop/horizontalpodautoscalers/payments-guard",
            "GET networking.k8s.io/v1/namespaces/shop/ingresses/payments-guard",
            "POST events.k8s.io/v1/namespaces/shop/events",
            "GET apps/v1/namespaces/shop/deployments/payments-guard",
            "PATCH guardrails.godel.dev/v1alpha1/namespaces/shop/guardrailpolicies/payments/status",
        ]
        .map(String::from),
    );
    assert_eq!(calls, expected);
    let stored = h.stored_policy();
    let status = stored.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.replica_summary.as_deref(), Some("0/3"));
    assert_eq!(status.mode.as_deref(), Some("local"));
    assert_eq!(condition(&stored, "Ready"), ("False".into(), "RollingOut".into()));
    assert_eq!(condition(&stored, "Progressing").0, "True");
    assert_eq!(condition(&stored, "Degraded").0, "False");
    assert_eq!(
        condition(&stored, "MonitoringConfigured"),
        ("False".into(), "PrometheusOperatorNotInstalled".into()),
        "absent monitoring CRDs are skipped and said so"
    );
    let deployment = h.fake.lock().unwrap().objects[&format!("{NS_APPS}/deployments/payments-guard")].clone();
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["kind"], "GuardrailPolicy");
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["controller"], true);
}

#[tokio::test]
async fn unchanged_policy_reads_only_and_status_is_written_when_the_fleet_changes() {
    let h = Harness::new(false);
    h.reconcile(&h.policy("{}")).await;
    let again = h.reconcile(&h.stored_policy()).await;
    assert!(h.writes().is_empty(), "no writes for an unchanged policy: {again:#?}");

    // The Deployment becomes ready: only the status (and a FleetReady event) is written.
    h.set(
        &format!("{NS_APPS}/deployments/payments-guard"),
        "/status",
        json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    h.reconcile(&h.stored_policy()).await;
    assert_eq!(
        h.writes(),
        [
            "POST events.k8s.io/v1/namespaces/shop/events",
            "PATCH guardrails.godel.dev/v1alpha1/namespaces/shop/guardrailpolicies/payments/status"
        ]
    );
    let stored = h.stored_policy();
    assert_eq!(condition(&stored, "Ready"), ("True".into(), "FleetReady".into()));
    assert_eq!(stored.status.as_ref().unwrap().replica_summary.as_deref(), Some("3/3"));
    h.reconcile(&stored).await;
    assert!(h.writes().is_empty(), "a ready, unchanged policy costs no writes");
}

#[tokio::test]
async fn invalid_regex_sets_conditions_and_an_event_and_touches_nothing_else() {
    let h = Harness::new(false);
    let policy = h.policy("guard: {traps: {regex: {rules: [{name: half-written, pattern: '(unclosed'}]}}}");
    let calls = h.reconcile(&policy).await;
    assert_eq!(
        calls,
        [
            "PATCH guardrails.godel.dev/v1alpha1/namespaces/shop/guardrailpolicies/payments/status",
            "POST events.k8s.io/v1/namespaces/shop/events",
        ]
    );
    let stored = h.stored_policy();
    assert_eq!(condition(&stored, "Ready"), ("False".into(), "InvalidGuardConfig".into()));
    assert_eq!(condition(&stored, "Degraded"), ("True".into(), "InvalidGuardConfig".into()));
    let message = &stored.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Degraded").unwrap().message;
    assert!(message.contains("half-written"), "{message}");
    // The same invalid spec again: no new Event, no status write.
    let calls = h.reconcile(&stored).await;
    assert!(calls.is_empty(), "{calls:?}");
    // Through the controller's entry point, the pass is counted as invalid, by reason.
    controller::reconcile(std::sync::Arc::new(stored), h.ctx.clone()).await.expect("the pass completes");
    let metrics = h.ctx.metrics.encode().unwrap();
    assert!(
        metrics.contains(r#"godel_operator_reconciles_total{result="invalid",reason="InvalidGuardConfig"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn monitoring_objects_are_applied_when_their_crds_exist() {
    let h = Harness::new(true);
    h.reconcile(&h.policy("monitoring: {labels: {release: prom}}")).await;
    let writes = h.writes();
    assert!(
        writes.contains(&"PATCH monitoring.coreos.com/v1/namespaces/shop/prometheusrules/payments-guard-rules".into())
    );
    assert!(writes.contains(&"PATCH monitoring.coreos.com/v1/namespaces/shop/servicemonitors/payments-guard".into()));
    let rule = h.fake.lock().unwrap().objects["/apis/monitoring.coreos.com/v1/namespaces/shop/prometheusrules/payments-guard-rules"].clone();
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    assert_eq!(condition(&h.stored_policy(), "MonitoringConfigured").0, "True");
}

#[tokio::test]
async fn missing_secret_is_reported_and_a_rotated_secret_rolls_the_pods() {
    let h = Harness::new(false);
    let spec = "secrets: [{name: godel-keys, mountPath: /etc/godel/keys}]";
    let calls = h.reconcile(&h.policy(spec)).await;
    assert_eq!(calls[0], "GET v1/namespaces/shop/secrets/godel-keys");
    assert_eq!(condition(&h.stored_policy(), "Degraded"), ("True".into(), "SecretNotFound".into()));
    assert!(!h.writes().iter().any(|w| w.contains("deployments")), "the fleet is left alone");

    let secret = format!("{NS_API}/secrets/godel-keys");
    h.fake.lock().unwrap().objects.insert(
        secret.clone(),
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "godel-keys", "namespace": "shop", "resourceVersion": "100"}}),
    );
    h.reconcile(&h.stored_policy()).await;
    let deployment = format!("{NS_APPS}/deployments/payments-guard");
    let hash = |h: &Harness| {
        h.fake.lock().unwrap().objects[&deployment]["spec"]["template"]["metadata"]["annotations"]
            ["guardrails.godel.dev/secrets-hash"]
            .clone()
    };
    let before = hash(&h);
    assert_eq!(condition(&h.stored_policy(), "Degraded").0, "False");

    h.set(&secret, "/metadata/resourceVersion", json!("101"));
    h.reconcile(&h.stored_policy()).await;
    let writes = h.writes();
    assert!(writes.contains(&"PATCH apps/v1/namespaces/shop/deployments/payments-guard".into()), "{writes:#?}");
    assert!(!writes.iter().any(|w| w.ends_with("configmaps/payments-guard") || w.contains("services/")), "{writes:#?}");
    assert_ne!(hash(&h), before, "the pod template changes, so the pods roll");
}

#[tokio::test]
async fn a_running_fleet_is_left_alone_when_its_spec_turns_invalid() {
    let h = Harness::new(false);
    h.reconcile(&h.policy("guard: {defaultTier: free}")).await;
    let deployment = format!("{NS_APPS}/deployments/payments-guard");
    let before = h.fake.lock().unwrap().objects[&deployment].clone();

    let mut broken = h.stored_policy();
    broken.metadata.generation = Some(2);
    broken.spec.guard.default_tier = "gold".into();
    h.reconcile(&broken).await;
    assert_eq!(
        h.writes(),
        [
            "PATCH guardrails.godel.dev/v1alpha1/namespaces/shop/guardrailpolicies/payments/status",
            "POST events.k8s.io/v1/namespaces/shop/events",
        ]
    );
    assert_eq!(h.fake.lock().unwrap().objects[&deployment], before, "the Deployment is untouched");
    let stored = h.stored_policy();
    assert_eq!(condition(&stored, "Degraded"), ("True".into(), "InvalidGuardConfig".into()));
    let ready = stored.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.observed_generation, Some(2));
    assert!(ready.message.contains("defaultTier"), "{}", ready.message);
}
