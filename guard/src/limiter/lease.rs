//! Admission leases: with a request that has to go to Redis anyway, a pod takes a few of
//! the user's next requests out of the shared bucket and admits them itself, so a busy
//! user costs one script call per lease instead of one per request.
//!
//! Nothing is admitted that the bucket did not hold: a lease is taken from the shared
//! tokens atomically by `bucket.lua`, so three pods still grant one limit. What changes is
//! *when* a token is spent: a leased request may come up to one lease lifetime after its
//! token left Redis, so over any window of `T` seconds a user gets at most
//! `burst + rate × (T + lifetime)` (the plain bucket: `burst + rate × T`). A lease is
//! sized by what the pod used of the last one (doubled when it ran out early, at most
//! [`MAX_LEASE`] and a lifetime's refill), never more than the bucket's tokens divided by
//! twice the fleet size, and never granted to a user at half the quarantine threshold or
//! more, or on a tier with usage meters: near its limit a user is decided request by
//! request, exactly as without leases. What a pod did not use goes back with its next
//! call for that user.
//!
//! Security debt found here waits in the user's entry and goes with the next call (or,
//! for a user who does not come back, with the flusher's call one lifetime later), unless
//! it takes the user's known debt past half the threshold: then it is sent at once and
//! the lease is dropped, so this pod's next decision for that user is Redis's.
//! A quarantine another pod causes reaches this one within a lifetime.
//!
//! Requests of one user often come together (an agent's parallel tool calls, a client's
//! retries). When one of them is already calling Redis for a lease, the others wait for
//! its answer (at most a lifetime) and take from that lease, rather than each calling
//! too; if it brings too little, or fails, they call as before.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::redis::{Ask, Leased};
use super::{BucketLimit, DebtPolicy};

const SHARDS: usize = 64;
/// The most requests one lease holds, whatever the tier allows: a pod that dies takes at
/// most this many of a user's requests with it.
pub(super) const MAX_LEASE: u32 = 64;
/// How long an entry outlives its last use: long enough to size the next lease by the
/// last, short enough that a flood of one-off users is gone soon.
const KEEP: Duration = Duration::from_secs(10);

/// One user's lease on this pod, and what this pod owes Redis for them.
struct Lease {
    /// Requests this pod may still admit on its own, until `expires`.
    left: u32,
    /// Requests the current lease held.
    granted: u32,
    /// When the current lease ends; with no lease, when the last call's window ends.
    expires: Instant,
    /// The bucket's whole requests beyond the lease when it was granted.
    remaining: u64,
    /// The size to ask for at the next call.
    next: u32,
    /// Leased requests not used, to give back at the next call.
    unused: u32,
    /// The user's debt as Redis last reported it.
    debt: f64,
    /// Debt points found here and not yet sent, since when, and the policy they decay by.
    pending: f64,
    pending_since: Instant,
    policy: DebtPolicy,
    seen: Instant,
    /// A call asking for a lease is on its way to Redis.
    calling: bool,
    /// Wakes the requests waiting for that call's answer.
    answered: Arc<Notify>,
}

impl Lease {
    fn new(now: Instant, lifetime: Duration, policy: DebtPolicy) -> Self {
        Self {
            left: 0,
            granted: 0,
            expires: now + lifetime,
            remaining: 0,
            next: 0,
            unused: 0,
            debt: 0.0,
            pending: 0.0,
            pending_since: now,
            policy,
            seen: now,
            calling: false,
            answered: Arc::new(Notify::new()),
        }
    }
}

/// What to do with a request: admit it from the pod's lease, call Redis with `Ask`, or
/// wait for the call another request of the user's is making, then begin again.
#[derive(Debug)]
pub(super) enum Begin {
    /// Admitted here; the whole requests the user can still be told remain.
    Leased(u64),
    Call(Ask),
    Wait(Arc<Notify>),
}

impl PartialEq for Begin {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Begin::Leased(a), Begin::Leased(b)) => a == b,
            (Begin::Call(a), Begin::Call(b)) => a == b,
            (Begin::Wait(a), Begin::Wait(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Debt points waiting to be sent, by bucket, with their policy.
pub(super) type DueDebt = (String, f64, DebtPolicy);

pub(super) struct Leases {
    shards: Vec<Mutex<HashMap<Box<str>, Lease>>>,
    hasher: RandomState,
    lifetime: Duration,
    /// Twice the fleet size: the share of a bucket one lease may take.
    divisor: u32,
}

impl Leases {
    pub(super) fn new(lifetime: Duration, fleet_size: u32) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            lifetime,
            divisor: fleet_size.max(1).saturating_mul(2),
        }
    }

    pub(super) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn shard(&self, bucket: &str) -> MutexGuard<'_, HashMap<Box<str>, Lease>> {
        let index = self.hasher.hash_one(bucket) as usize % SHARDS;
        // A poisoned shard only means a request panicked mid-update; its numbers are
        // still usable.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest lease a tier allows: a lifetime's refill, at most [`MAX_LEASE`]; none
    /// on a tier with usage meters, whose every request reserves against them in Redis.
    fn cap(&self, limit: BucketLimit, metered: bool) -> u32 {
        if metered {
            return 0;
        }
        let refill = (limit.rate_per_second * self.lifetime.as_secs_f64()).floor();
        if refill.is_finite() { refill.clamp(0.0, f64::from(MAX_LEASE)) as u32 } else { 0 }
    }

    /// Admits the request from this pod's lease when it holds one; else, unless it
    /// `waited` already, has it wait for a call on its way for a lease; else says what
    /// the call to Redis should carry: the pending debt, what an expired lease left
    /// unused, and a lease sized by the last one.
    pub(super) fn begin(
        &self,
        bucket: &str,
        limit: BucketLimit,
        metered: bool,
        debt: DebtPolicy,
        now: Instant,
        waited: bool,
    ) -> Begin {
        let cap = self.cap(limit, metered);
        let mut shard = self.shard(bucket);
        let Some(lease) = shard.get_mut(bucket) else {
            // A user new to this pod: no lease yet, nothing known of their pace.
            shard.insert(bucket.into(), Lease::new(now, self.lifetime, debt));
            return Begin::Call(Ask { divisor: self.divisor, ..Ask::NONE });
        };
        lease.seen = now;
        if now < lease.expires && lease.left > 0 {
            lease.left -= 1;
            return Begin::Leased(lease.remaining + u64::from(lease.left));
        }
        if lease.calling && !waited {
            return Begin::Wait(Arc::clone(&lease.answered));
        }
        if now < lease.expires {
            // Used up within its lifetime: the user is faster than the lease.
            lease.next = lease.next.saturating_mul(2).max(1);
        } else {
            lease.unused += lease.left;
            lease.next = lease.granted - lease.left;
        }
        lease.left = 0;
        lease.granted = 0;
        let want = lease.next.min(cap);
        lease.calling |= want > 0;
        Begin::Call(Ask {
            debt: std::mem::take(&mut lease.pending),
            want,
            divisor: self.divisor,
            given_back: std::mem::take(&mut lease.unused),
        })
    }

    /// Whether a call for `bucket` is still on its way: a request told to wait checks
    /// this after it began listening for the answer, so that it cannot miss it.
    pub(super) fn calling(&self, bucket: &str) -> bool {
        self.shard(bucket).get(bucket).is_some_and(|lease| lease.calling)
    }

    /// A call for `bucket` failed or was abandoned. If it `asked` for a lease, the
    /// requests waiting for it go on and call themselves.
    pub(super) fn failed(&self, bucket: &str, asked: bool) {
        if asked && let Some(lease) = self.shard(bucket).get_mut(bucket) {
            lease.calling = false;
            lease.answered.notify_waiters();
        }
    }

    /// Records what Redis answered: the lease it granted and the user's debt. An answer
    /// to a call that `asked` for a lease wakes the requests waiting for it.
    pub(super) fn granted(&self, bucket: &str, leased: &Leased, asked: bool, now: Instant) {
        let mut shard = self.shard(bucket);
        let Some(lease) = shard.get_mut(bucket) else { return };
        lease.debt = leased.debt;
        if lease.left == 0 {
            // A lease granted beside one still running (a concurrent call) keeps that
            // one's end: no token lives longer than a lifetime.
            lease.expires = now + self.lifetime;
            lease.remaining = leased.admission.remaining;
        }
        lease.left += leased.granted;
        lease.granted += leased.granted;
        if asked {
            lease.calling = false;
            lease.answered.notify_waiters();
        }
    }

    /// Adds debt points found on this pod. `None`: they wait for the next call. `Some`:
    /// they would take the user past half the threshold, so they are to be sent now
    /// (with whatever was pending) and the lease is dropped.
    pub(super) fn add_debt(&self, bucket: &str, points: f64, policy: DebtPolicy, now: Instant) -> Option<f64> {
        let mut shard = self.shard(bucket);
        let Some(lease) = shard.get_mut(bucket) else { return Some(points) };
        if lease.debt + lease.pending + points > policy.quarantine_threshold / 2.0 {
            lease.unused += lease.left;
            lease.left = 0;
            return Some(points + std::mem::take(&mut lease.pending));
        }
        if lease.pending == 0.0 {
            lease.pending_since = now;
        }
        lease.pending += points;
        lease.policy = policy;
        None
    }

    /// Records the user's debt as Redis reported it after debt this pod sent.
    pub(super) fn sent(&self, bucket: &str, debt: f64) {
        if let Some(lease) = self.shard(bucket).get_mut(bucket) {
            lease.debt = debt;
        }
    }

    /// Takes the debt that has waited at least `waited` (its user made no call since):
    /// a lifetime for the flusher, zero for a guard that is shutting down. Drops the
    /// entries of users gone for [`KEEP`].
    pub(super) fn due(&self, now: Instant, waited: Duration) -> Vec<DueDebt> {
        let mut due = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|bucket, lease| {
                if lease.pending > 0.0 && now.duration_since(lease.pending_since) >= waited {
                    due.push((bucket.to_string(), std::mem::take(&mut lease.pending), lease.policy));
                }
                lease.pending > 0.0 || now.duration_since(lease.seen) < KEEP
            });
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::limiter::Admission;

    const POLICY: DebtPolicy = DebtPolicy { half_life_seconds: 600.0, quarantine_threshold: 200.0 };
    const FAST: BucketLimit = BucketLimit { rate_per_second: 1000.0, burst: 1000.0 };

    fn answer(granted: u32, remaining: u64, debt: f64) -> Leased {
        Leased { admission: Admission { refused: None, remaining, retry_after_ms: 0 }, granted, debt }
    }

    fn want(begin: Begin) -> Ask {
        match begin {
            Begin::Call(ask) => ask,
            other => panic!("a call was due, not {other:?}"),
        }
    }

    #[test]
    fn a_lease_grows_while_the_user_outpaces_it_and_is_spent_before_the_next_call() {
        let leases = Leases::new(Duration::from_secs(1), 3);
        let now = Instant::now();
        let first = want(leases.begin("free:u", FAST, false, POLICY, now, false));
        assert_eq!((first.want, first.divisor), (0, 6), "nothing is known of a new user's pace");
        leases.granted("free:u", &answer(0, 999, 0.0), false, now);
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let ask = want(leases.begin("free:u", FAST, false, POLICY, now, false));
            sizes.push(ask.want);
            leases.granted("free:u", &answer(ask.want, 500, 0.0), true, now);
            for left in (0..ask.want).rev() {
                assert_eq!(
                    leases.begin("free:u", FAST, false, POLICY, now, false),
                    Begin::Leased(500 + u64::from(left))
                );
            }
        }
        assert_eq!(sizes, [1, 2, 4, 8, 16], "doubled each time it ran out within its lifetime");
    }

    #[test]
    fn an_expired_lease_gives_back_what_was_unused_and_sizes_the_next_by_what_was_used() {
        let leases = Leases::new(Duration::from_secs(1), 1);
        let now = Instant::now();
        leases.begin("free:u", FAST, false, POLICY, now, false);
        leases.granted("free:u", &answer(0, 999, 0.0), false, now);
        let ask = want(leases.begin("free:u", FAST, false, POLICY, now, false));
        leases.granted("free:u", &answer(ask.want, 998, 0.0), true, now);
        assert_eq!(ask.want, 1);
        let later = now + Duration::from_millis(1500);
        let after = want(leases.begin("free:u", FAST, false, POLICY, later, false));
        assert_eq!((after.given_back, after.want), (1, 0), "the unused request goes back; none was used");
    }

    #[test]
    fn no_lease_beyond_a_lifetimes_refill_the_cap_or_on_a_metered_tier() {
        let leases = Leases::new(Duration::from_millis(500), 1);
        let slow = BucketLimit { rate_per_second: 6.0, burst: 100.0 };
        assert_eq!(leases.cap(slow, false), 3);
        assert_eq!(leases.cap(FAST, false), MAX_LEASE);
        assert_eq!(leases.cap(FAST, true), 0);
        assert_eq!(leases.cap(BucketLimit { rate_per_second: 0.01, burst: 5.0 }, false), 0);
    }

    #[test]
    fn small_debt_waits_for_the_next_call_and_debt_near_the_threshold_goes_at_once() {
        let leases = Leases::new(Duration::from_secs(1), 1);
        let now = Instant::now();
        assert_eq!(leases.add_debt("free:new", 5.0, POLICY, now), Some(5.0), "no entry: nothing to ride with");
        leases.begin("free:u", FAST, false, POLICY, now, false);
        leases.granted("free:u", &answer(0, 999, 40.0), false, now);
        let ask = want(leases.begin("free:u", FAST, false, POLICY, now, false));
        leases.granted("free:u", &answer(ask.want, 998, 40.0), true, now);
        assert_eq!(leases.add_debt("free:u", 20.0, POLICY, now), None, "40 + 20 is under half of 200");
        assert_eq!(leases.add_debt("free:u", 5.0, POLICY, now), None);
        assert_eq!(
            leases.begin("free:u", FAST, false, POLICY, now, false),
            Begin::Leased(998),
            "debt leaves the lease be"
        );
        let next = want(leases.begin("free:u", FAST, false, POLICY, now, false));
        assert_eq!(next.debt, 25.0, "the pending debt rides with the next call");
        leases.granted("free:u", &answer(4, 990, 65.0), true, now);
        assert_eq!(leases.add_debt("free:u", 5.0, POLICY, now), None);
        assert_eq!(leases.add_debt("free:u", 40.0, POLICY, now), Some(45.0), "65 + 45 passes 100: sent now");
        let after = want(leases.begin("free:u", FAST, false, POLICY, now, false));
        assert_eq!((after.given_back, after.debt), (4, 0.0), "the lease was dropped and goes back");
    }

    #[test]
    fn debt_of_a_user_who_does_not_come_back_is_due_after_a_lifetime_and_idle_entries_go() {
        let leases = Leases::new(Duration::from_secs(1), 1);
        let now = Instant::now();
        leases.begin("free:u", FAST, false, POLICY, now, false);
        assert_eq!(leases.add_debt("free:u", 20.0, POLICY, now), None);
        assert!(leases.due(now + Duration::from_millis(500), leases.lifetime()).is_empty());
        let due = leases.due(now + Duration::from_secs(1), leases.lifetime());
        assert_eq!(due, [("free:u".to_owned(), 20.0, POLICY)]);
        assert!(leases.due(now + Duration::from_secs(2), leases.lifetime()).is_empty(), "sent once");
        leases.due(now + KEEP, leases.lifetime());
        assert!(leases.shards.iter().all(|s| s.lock().unwrap().is_empty()), "idle entries are dropped");
    }

    /// Requests of one user at once: while a call is on its way for a lease, the others
    /// wait for its answer and take from it; an answer that brings too little, or a call
    /// that fails, lets them call themselves.
    #[test]
    fn requests_at_once_wait_for_the_lease_on_its_way() {
        let leases = Leases::new(Duration::from_secs(1), 1);
        let now = Instant::now();
        let begin = |waited| leases.begin("free:u", FAST, false, POLICY, now, waited);
        assert_eq!(want(begin(false)).want, 0, "a new user's first call asks for no lease");
        assert!(!leases.calling("free:u"));
        let second = want(begin(false));
        assert_eq!(second.want, 1, "a second request before the first's answer: the user is fast");
        assert!(leases.calling("free:u"));
        let Begin::Wait(answered) = begin(false) else { panic!("a third waits for the lease on its way") };
        assert_eq!(begin(false), Begin::Wait(answered.clone()), "and so does a fourth");

        let notified = answered.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        leases.granted("free:u", &answer(0, 999, 0.0), false, now);
        assert!(notified.as_mut().now_or_never().is_none(), "the first call asked for nothing: still waiting");
        leases.granted("free:u", &answer(1, 998, 0.0), true, now);
        assert!(notified.as_mut().now_or_never().is_some(), "the lease's answer wakes them");
        assert!(!leases.calling("free:u"));
        assert_eq!(begin(true), Begin::Leased(998), "one takes the leased request");
        let third = want(begin(true));
        assert_eq!(third.want, 2, "the other, after waiting once, calls, and the next lease doubles");

        let Begin::Wait(answered) = begin(false) else { panic!("a request waits for that call") };
        let notified = answered.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        leases.failed("free:u", true);
        assert!(notified.as_mut().now_or_never().is_some(), "a failed call wakes them too");
        assert!(matches!(begin(true), Begin::Call(_)), "and they call themselves");
    }

    #[test]
    fn at_shutdown_every_pending_debt_is_due() {
        let leases = Leases::new(Duration::from_secs(1), 1);
        let now = Instant::now();
        for user in ["free:a", "free:b"] {
            leases.begin(user, FAST, false, POLICY, now, false);
            leases.add_debt(user, 1.0, POLICY, now);
        }
        let mut drained = leases.due(now, Duration::ZERO);
        drained.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(drained, [("free:a".to_owned(), 1.0, POLICY), ("free:b".to_owned(), 1.0, POLICY)]);
        assert!(leases.due(now, Duration::ZERO).is_empty());
    }
}
