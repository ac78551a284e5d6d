//! In-memory buckets: the embedded default for a single guard, and the fallback when
//! Redis is unreachable. Sharded so concurrent requests rarely contend, and swept of
//! entries that are full buckets again (as Redis expires its keys), so a flood of one-off
//! users cannot grow memory without bound and memory comes back once they are gone.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use super::{
    Admission, BucketLimit, DebtPolicy, Limiter, LimiterFuture, Meter, Throttle, Usage, UsageLimit, decay, drain,
    meter_wait_ms, quarantine_ms,
};

const SHARDS: usize = 64;
/// How often idle entries are swept, by the sweeper task and by a request touching a
/// shard.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(10);

struct Entry {
    tokens: f64,
    debt: f64,
    refilled: Instant,
    decayed: Instant,
    /// Each usage meter's level and when it was last drained, by [`Meter::slot`].
    meters: [(f64, Instant); 3],
    /// When the bucket is full again and the meters empty if nothing takes from them:
    /// from then on the entry is the same as no entry, and only its debt can keep it.
    idle_at: Instant,
}

impl Entry {
    /// The meter's level, drained to `now`.
    fn drained(&mut self, meter: &Meter, now: Instant) -> &mut f64 {
        let (level, at) = &mut self.meters[meter.slot];
        *level = drain(*level, now.duration_since(*at).as_secs_f64(), meter);
        *at = now;
        level
    }

    fn expendable(&self, now: Instant, debt: DebtPolicy) -> bool {
        now >= self.idle_at
            && decay(self.debt, now.duration_since(self.decayed).as_secs_f64(), debt.half_life_seconds) < 0.5
    }
}

/// A bucket's key: 128 bits of two independently keyed SipHashes of its name. A
/// fixed-size key keeps every entry inside its map's one allocation, so a swept shard
/// hands its memory back whole instead of leaving the holes of thousands of small
/// strings; and two buckets share an entry only with probability n² / 2¹²⁹.
type Key = u128;

/// The map's hasher for keys that are already keyed hashes: their low bits, as they are.
#[derive(Default)]
struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

struct Shard {
    entries: HashMap<Key, Entry, BuildHasherDefault<KeyBits>>,
    swept: Instant,
}

pub struct LocalLimiter {
    shards: Vec<Mutex<Shard>>,
    hashers: [RandomState; 2],
    /// Open streams per user: lease id and when it expires. Streams are few beside
    /// requests, so one lock; a user's entry goes with their last lease.
    streams: Mutex<HashMap<String, Vec<(String, Instant)>>>,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalLimiter {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { entries: HashMap::default(), swept: now })).collect(),
            hashers: [RandomState::new(), RandomState::new()],
            streams: Mutex::default(),
        }
    }

    /// [`Limiter::open_stream`] at `now`: expired leases are dropped first.
    pub fn open_stream_at(&self, key: &str, lease: &str, cap: u32, ttl: Duration, now: Instant) -> bool {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let leases = streams.entry(key.to_owned()).or_default();
        leases.retain(|(_, expires)| *expires > now);
        if leases.len() >= cap as usize {
            return false;
        }
        leases.push((lease.to_owned(), now + ttl));
        true
    }

    pub fn close_stream_now(&self, key: &str, lease: &str) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(leases) = streams.get_mut(key) {
            leases.retain(|(id, _)| id != lease);
            if leases.is_empty() {
                streams.remove(key);
            }
        }
    }

    /// Runs `f` on the key's entry with its debt decayed to `now` and, when a limit is
    /// given, its bucket refilled to `now`; `usage` says how long its meters stay busy.
    fn with_entry<T>(
        &self,
        name: &str,
        limit: Option<BucketLimit>,
        usage: UsageLimit,
        debt: DebtPolicy,
        now: Instant,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> T {
        let key = (u128::from(self.hashers[0].hash_one(name)) << 64) | u128::from(self.hashers[1].hash_one(name));
        let index = (key >> 64) as usize % SHARDS;
        // A poisoned shard only means another request panicked mid-update; the
        // numbers in it are still usable, so take them rather than fail every request.
        let mut shard = self.shards[index].lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(shard.swept) >= SWEEP_EVERY {
            shard.sweep(now, debt);
        }
        let entry = shard.entries.entry(key).or_insert(Entry {
            // A new bucket is full; the refill below clamps it to the burst.
            tokens: f64::INFINITY,
            debt: 0.0,
            refilled: now,
            decayed: now,
            meters: [(0.0, now); 3],
            idle_at: now,
        });
        if let Some(limit) = limit {
            let elapsed = now.duration_since(entry.refilled).as_secs_f64();
            entry.tokens = (entry.tokens + elapsed * limit.rate_per_second).min(limit.burst);
            entry.refilled = now;
        }
        entry.debt = decay(entry.debt, now.duration_since(entry.decayed).as_secs_f64(), debt.half_life_seconds);
        entry.decayed = now;
        let result = f(entry);
        let after = |seconds: f64| now + Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX / 4);
        if let Some(limit) = limit {
            entry.idle_at = entry.idle_at.max(after((limit.burst - entry.tokens).max(0.0) / limit.rate_per_second));
        }
        for meter in usage.meters(Usage::default()) {
            let level = *entry.drained(&meter, now);
            entry.idle_at = entry.idle_at.max(after(level / meter.cap * meter.window_seconds));
        }
        result
    }

    /// Drops every entry that is a full bucket again without debt, in every shard, and
    /// hands the memory back: the maps shrink, and on glibc the freed heap pages return
    /// to the system. Returns how many entries were dropped.
    #[allow(unsafe_code)] // malloc_trim, below
    pub fn sweep(&self, now: Instant, debt: DebtPolicy) -> usize {
        let dropped: usize =
            self.shards.iter().map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()).sweep(now, debt)).sum();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if dropped >= 1024 {
            // SAFETY: malloc_trim only releases free memory; it has no preconditions.
            unsafe { libc::malloc_trim(0) };
        }
        dropped
    }

    /// Entries in every shard (for tests and the memory benchmark).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn admit_at(
        &self,
        key: &str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
        now: Instant,
    ) -> Admission {
        self.with_entry(key, Some(limit), usage, debt, now, |e| {
            let remaining = e.tokens.floor() as u64;
            let quarantine = quarantine_ms(e.debt, debt);
            if quarantine > 0 {
                return Admission::refused(Throttle::Quarantined, quarantine, remaining);
            }
            if e.tokens < 1.0 {
                let wait = (1.0 - e.tokens) / limit.rate_per_second * 1000.0;
                return Admission::refused(Throttle::RateLimited, wait.ceil() as u64, 0);
            }
            let full = usage
                .meters(reserve)
                .filter_map(|meter| {
                    let level = *e.drained(&meter, now);
                    (level >= meter.cap).then(|| (meter_wait_ms(level, &meter), meter.field))
                })
                .max_by_key(|&(wait, _)| wait);
            if let Some((wait, field)) = full {
                return Admission::refused(Throttle::of_meter(field), wait, remaining);
            }
            for meter in usage.meters(reserve) {
                *e.drained(&meter, now) += meter.charge;
            }
            e.tokens -= 1.0;
            Admission { refused: None, remaining: e.tokens.floor() as u64, retry_after_ms: 0 }
        })
    }

    pub fn settle_at(&self, key: &str, usage: UsageLimit, delta: Usage, debt: DebtPolicy, now: Instant) {
        self.with_entry(key, None, usage, debt, now, |e| {
            for meter in usage.meters(delta) {
                let level = e.drained(&meter, now);
                *level = (*level + meter.charge).max(0.0);
            }
        });
    }

    pub fn add_debt_at(&self, key: &str, points: f64, debt: DebtPolicy, now: Instant) {
        self.with_entry(key, None, UsageLimit::default(), debt, now, |e| e.debt += points);
    }
}

impl Shard {
    fn sweep(&mut self, now: Instant, debt: DebtPolicy) -> usize {
        self.swept = now;
        let before = self.entries.len();
        self.entries.retain(|_, e| !e.expendable(now, debt));
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        before - self.entries.len()
    }
}

/// Sweeps `limiter` every [`SWEEP_EVERY`] while it lives, so memory comes back even when
/// no request touches a shard again.
pub fn spawn_sweeper<T: Send + Sync + 'static>(owner: Weak<T>, local: fn(&T) -> &LocalLimiter, debt: DebtPolicy) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(owner) = owner.upgrade() else { return };
            let dropped = local(&owner).sweep(Instant::now(), debt);
            if dropped > 0 {
                tracing::debug!(dropped, "idle buckets swept");
            }
        }
    });
}

impl Limiter for LocalLimiter {
    fn admit<'a>(
        &'a self,
        key: &'a str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
    ) -> LimiterFuture<'a, Admission> {
        let admission = self.admit_at(key, limit, usage, reserve, debt, Instant::now());
        Box::pin(async move { Ok(admission) })
    }

    fn settle<'a>(&'a self, key: &'a str, usage: UsageLimit, delta: Usage, debt: DebtPolicy) -> LimiterFuture<'a, ()> {
        self.settle_at(key, usage, delta, debt, Instant::now());
        Box::pin(async { Ok(()) })
    }

    fn add_debt<'a>(&'a self, key: &'a str, points: f64, debt: DebtPolicy) -> LimiterFuture<'a, ()> {
        self.add_debt_at(key, points, debt, Instant::now());
        Box::pin(async { Ok(()) })
    }

    fn open_stream<'a>(&'a self, key: &'a str, lease: &'a str, cap: u32, ttl: Duration) -> LimiterFuture<'a, bool> {
        let held = self.open_stream_at(key, lease, cap, ttl, Instant::now());
        Box::pin(async move { Ok(held) })
    }

    fn close_stream<'a>(&'a self, key: &'a str, lease: &'a str) -> LimiterFuture<'a, ()> {
        self.close_stream_now(key, lease);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: BucketLimit = BucketLimit { rate_per_second: 2.0, burst: 3.0 };
    const DEBT: DebtPolicy = DebtPolicy { half_life_seconds: 10.0, quarantine_threshold: 100.0 };
    const BIG: BucketLimit = BucketLimit { rate_per_second: 100.0, burst: 100.0 };
    const NONE: UsageLimit = UsageLimit::NONE;
    const NOTHING: Usage = Usage::ZERO;

    #[test]
    fn burst_then_refuse_then_refill() {
        let l = LocalLimiter::new();
        let t0 = Instant::now();
        let allowed: Vec<_> = (0..4).map(|_| l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0).allowed()).collect();
        assert_eq!(allowed, [true, true, true, false]);
        let refused = l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0);
        assert_eq!(refused.retry_after_ms, 500);
        assert!(l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0 + Duration::from_millis(500)).allowed());
        assert!(!l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0 + Duration::from_millis(500)).allowed());
    }

    #[test]
    fn a_full_meter_refuses_until_it_drains_and_settling_corrects_it() {
        let l = LocalLimiter::new();
        let t0 = Instant::now();
        let tpm = UsageLimit { tokens_per_minute: Some(1000.0), ..NONE };
        let ask = |tokens: f64, at: Instant| l.admit_at("free:a", BIG, tpm, Usage { tokens, spend: 0.0 }, DEBT, at);
        assert!(ask(600.0, t0).allowed());
        assert!(ask(600.0, t0).allowed(), "under the cap when asked: admitted, and may overshoot by one");
        let full = ask(1.0, t0);
        assert_eq!(full.refused, Some(Throttle::TokenLimited));
        assert_eq!(full.retry_after_ms, 12_001, "200 over a cap that drains 1000 a minute");
        assert!(ask(1.0, t0 + Duration::from_millis(12_001)).allowed());
        l.settle_at("free:a", tpm, Usage { tokens: -5_000.0, spend: 0.0 }, DEBT, t0 + Duration::from_secs(13));
        assert!(ask(1000.0, t0 + Duration::from_secs(13)).allowed(), "settled below empty is empty, not credit");
        assert_eq!(ask(1.0, t0 + Duration::from_secs(13)).refused, Some(Throttle::TokenLimited));
        let budget = UsageLimit { spend_per_day: Some(1.0), ..NONE };
        assert!(l.admit_at("free:b", BIG, budget, Usage { tokens: 0.0, spend: 1.5 }, DEBT, t0).allowed());
        let spent = l.admit_at("free:b", BIG, budget, NOTHING, DEBT, t0);
        assert_eq!(spent.refused, Some(Throttle::OverBudget));
        assert_eq!(l.sweep(t0 + Duration::from_secs(3_600), DEBT), 1, "a's minute has drained, b's day has not");
        assert!(!l.admit_at("free:b", BIG, budget, NOTHING, DEBT, t0 + Duration::from_secs(3_600)).allowed());
    }

    #[test]
    fn stream_leases_are_capped_given_back_and_expire() {
        let l = LocalLimiter::new();
        let (t0, ttl) = (Instant::now(), Duration::from_secs(10));
        assert!(l.open_stream_at("free:a", "r1", 2, ttl, t0));
        assert!(l.open_stream_at("free:a", "r2", 2, ttl, t0));
        assert!(!l.open_stream_at("free:a", "r3", 2, ttl, t0), "the cap");
        assert!(l.open_stream_at("free:b", "r4", 2, ttl, t0), "another user's");
        l.close_stream_now("free:a", "r1");
        assert!(l.open_stream_at("free:a", "r5", 2, ttl, t0), "a lease given back");
        assert!(!l.open_stream_at("free:a", "r6", 2, ttl, t0 + Duration::from_secs(9)));
        assert!(l.open_stream_at("free:a", "r7", 2, ttl, t0 + Duration::from_secs(10)), "expired leases");
    }

    #[test]
    fn keys_are_independent() {
        let l = LocalLimiter::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0);
        }
        assert!(!l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0).allowed());
        assert!(l.admit_at("premium:a", LIMIT, NONE, NOTHING, DEBT, t0).allowed());
        assert!(l.admit_at("free:b", LIMIT, NONE, NOTHING, DEBT, t0).allowed());
    }

    #[test]
    fn debt_quarantines_until_it_decays() {
        let l = LocalLimiter::new();
        let t0 = Instant::now();
        l.add_debt_at("free:a", 200.0, DEBT, t0);
        let a = l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0);
        assert_eq!(a.refused, Some(Throttle::Quarantined));
        assert_eq!(a.retry_after_ms, 10_000);
        let later = l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0 + Duration::from_secs(11));
        assert!(later.allowed());
    }

    #[test]
    fn full_buckets_without_debt_are_swept_and_others_kept() {
        let l = LocalLimiter::new();
        let t0 = Instant::now();
        for user in 0..10_000 {
            l.admit_at(&format!("free:{user}"), LIMIT, NONE, NOTHING, DEBT, t0);
        }
        l.add_debt_at("free:0", 200.0, DEBT, t0);
        assert_eq!(l.len(), 10_000);
        assert_eq!(l.sweep(t0 + Duration::from_millis(400), DEBT), 0, "not full yet: one token of three takes 500 ms");
        assert_eq!(l.sweep(t0 + Duration::from_millis(600), DEBT), 9_999, "full again, so the same as no entry");
        assert_eq!(l.len(), 1, "the user with debt stays");
        assert!(
            !l.admit_at("free:0", LIMIT, NONE, NOTHING, DEBT, t0 + Duration::from_millis(600)).allowed(),
            "still quarantined"
        );
    }

    #[test]
    fn adding_debt_leaves_the_bucket_alone() {
        let l = LocalLimiter::new();
        let t0 = Instant::now();
        l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0);
        l.add_debt_at("free:a", 5.0, DEBT, t0 + Duration::from_millis(250));
        let a = l.admit_at("free:a", LIMIT, NONE, NOTHING, DEBT, t0 + Duration::from_millis(500));
        assert_eq!(a.remaining, 2, "burst 3, one taken, one refilled, one taken now");
    }
}
