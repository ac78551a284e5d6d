//! Lease leader election against kube's mock service: a fake API server holding one
//! Lease with resourceVersion checks, like the real one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use godel_operator::leader::LeaderElector;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::{Api, Client};
use serde_json::{Value, json};

#[derive(Default)]
struct LeaseServer {
    lease: Option<Value>,
    version: u64,
    calls: Vec<String>,
    /// Another candidate whose write lands just before the next PUT.
    rival: Option<String>,
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason});
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

impl LeaseServer {
    fn answer(&mut self, method: &Method, body: &[u8]) -> Response<Body> {
        self.calls.push(method.to_string());
        let store = |server: &mut Self, mut lease: Value| {
            server.version += 1;
            lease["metadata"]["resourceVersion"] = json!(server.version.to_string());
            server.lease = Some(lease.clone());
            Response::builder().status(StatusCode::OK).body(Body::from(serde_json::to_vec(&lease).unwrap())).unwrap()
        };
        match *method {
            Method::GET => match &self.lease {
                Some(l) => Response::builder().status(200).body(Body::from(serde_json::to_vec(l).unwrap())).unwrap(),
                None => status(404, "NotFound"),
            },
            Method::POST if self.lease.is_some() => status(409, "AlreadyExists"),
            Method::POST => store(self, serde_json::from_slice(body).unwrap()),
            Method::PUT => {
                if let Some(rival) = self.rival.take() {
                    let mut stolen = self.lease.clone().unwrap();
                    stolen["spec"]["holderIdentity"] = json!(rival);
                    store(self, stolen);
                }
                let lease: Value = serde_json::from_slice(body).unwrap();
                let current = self.lease.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
                if current != Some(lease["metadata"]["resourceVersion"].clone()) {
                    return status(409, "Conflict");
                }
                store(self, lease)
            }
            _ => panic!("unexpected {method}"),
        }
    }
}

fn elector(server: &Arc<Mutex<LeaseServer>>, identity: &str) -> LeaderElector {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let served = server.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let response = served.lock().unwrap().answer(&parts.method, &bytes);
            respond.send_response(response);
        }
    });
    let api = Api::namespaced(Client::new(service, "godel-system"), "godel-system");
    LeaderElector::new(api, "godel-operator-leader", identity, Duration::from_secs(15))
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn holder(server: &Arc<Mutex<LeaseServer>>) -> String {
    server.lock().unwrap().lease.as_ref().unwrap()["spec"]["holderIdentity"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn first_candidate_creates_the_lease_and_the_second_waits() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    let (a, b) = (elector(&server, "operator-a"), elector(&server, "operator-b"));
    assert!(a.try_acquire_or_renew(at(0)).await.unwrap());
    assert_eq!(server.lock().unwrap().calls, ["GET", "POST"]);
    assert!(!b.try_acquire_or_renew(at(5)).await.unwrap(), "a fresh lease held by another is respected");
    assert!(a.try_acquire_or_renew(at(10)).await.unwrap(), "the holder renews");
    assert_eq!(holder(&server), "operator-a");
    let renewed = server.lock().unwrap().lease.clone().unwrap();
    assert_eq!(renewed["spec"]["leaseTransitions"], 0);
    assert!(renewed["spec"]["renewTime"].as_str().unwrap() > renewed["spec"]["acquireTime"].as_str().unwrap());
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_a_transition() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    let (a, b) = (elector(&server, "operator-a"), elector(&server, "operator-b"));
    assert!(a.try_acquire_or_renew(at(0)).await.unwrap());
    // a stops renewing; 15 s later its lease has expired.
    assert!(!b.try_acquire_or_renew(at(14)).await.unwrap());
    assert!(b.try_acquire_or_renew(at(16)).await.unwrap());
    assert_eq!(holder(&server), "operator-b");
    assert_eq!(server.lock().unwrap().lease.as_ref().unwrap()["spec"]["leaseTransitions"], 1);
    assert!(!a.try_acquire_or_renew(at(17)).await.unwrap(), "the old leader learns it lost");
}

#[tokio::test]
async fn a_concurrent_takeover_makes_the_loser_back_off() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    let (a, b) = (elector(&server, "operator-a"), elector(&server, "operator-b"));
    assert!(a.try_acquire_or_renew(at(0)).await.unwrap());
    // The lease expires; b reads it, but operator-c's takeover lands before b's write.
    // b's write carries the stale resourceVersion, the server answers 409, and b does
    // not claim leadership.
    server.lock().unwrap().rival = Some("operator-c".into());
    assert!(!b.try_acquire_or_renew(at(30)).await.unwrap());
    assert_eq!(holder(&server), "operator-c");
    assert_eq!(server.lock().unwrap().calls[2..], ["GET", "PUT"]);
}
