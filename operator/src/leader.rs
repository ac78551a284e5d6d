//! Leader election on a `coordination.k8s.io/v1` Lease, so several operator replicas can
//! run and exactly one reconciles. kube-rs has none built in, and the crates that do lag
//! kube's release; this is the client-go algorithm in small: take the Lease when it is
//! free or expired, renew it well before it expires, and use the resourceVersion so two
//! candidates cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        lease_duration: Duration,
    ) -> Self {
        Self { api, name: name.into(), identity: identity.into(), lease_duration }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: `true` when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let duration =
            spec.lease_duration_seconds.map_or(self.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
        let expired = match &spec.renew_time {
            Some(MicroTime(renewed)) => now.duration_since(*renewed).unsigned_abs() > duration && now > *renewed,
            None => true,
        };
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !(ours || expired || free) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time } else { None };
        lease.spec = Some(self.spec(now, acquired, transitions));
        // `replace` sends the resourceVersion we read: a concurrent winner makes it 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Campaigns until this replica leads, then keeps renewing; resolves when
    /// leadership is lost (the caller exits, and the pod campaigns again on restart).
    /// A failed renewal (an API server restart, a dropped connection) is retried: the
    /// leader steps down only when it could not renew for two thirds of the lease, well
    /// before another replica may take the expired Lease.
    pub async fn lead(&self, on_change: impl Fn(bool)) {
        // client-go's defaults for a 15 s lease: retry every 2 s, give up after 10 s.
        let retry = (self.lease_duration / 3).min(Duration::from_secs(2));
        let renew_deadline = self.lease_duration * 2 / 3;
        let mut leading = false;
        let mut renewed = tokio::time::Instant::now();
        loop {
            let held = match self.try_acquire_or_renew(Timestamp::now()).await {
                Ok(held) => {
                    if held {
                        renewed = tokio::time::Instant::now();
                    }
                    held
                }
                Err(e) if leading && renewed.elapsed() < renew_deadline => {
                    tracing::warn!(error = %e, "lease renewal failed; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease round failed");
                    false
                }
            };
            if held != leading {
                leading = held;
                on_change(held);
                if !held {
                    return;
                }
                tracing::info!(identity = %self.identity, "leading");
            }
            tokio::time::sleep(retry).await;
        }
    }
}
