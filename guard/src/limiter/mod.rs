//! Rate limiting and quarantine. A token bucket per `(tier, analytical id)`; next to it
//! the user's usage meters (model tokens per minute and per day, spend per day), each
//! draining continuously over its window; and the user's security debt, decaying with a
//! half-life. One trait so the in-memory and shared (Redis) backends are interchangeable
//! and share these semantics.

mod access;
mod breaker;
mod failover;
mod lease;
mod local;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use breaker::CircuitBreaker;
pub use failover::FailoverLimiter;
pub use local::{LocalLimiter, spawn_sweeper};
pub use redis::{Ask, KEY_PREFIX, Leased, RedisBackend, bucket_key};

/// Limits of one tier's bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketLimit {
    pub rate_per_second: f64,
    pub burst: f64,
}

/// Debt policy: decay half-life and the quarantine threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DebtPolicy {
    pub half_life_seconds: f64,
    pub quarantine_threshold: f64,
}

impl From<&godel_config::SecurityDebtConfig> for DebtPolicy {
    fn from(config: &godel_config::SecurityDebtConfig) -> Self {
        Self { half_life_seconds: config.half_life_seconds, quarantine_threshold: config.quarantine_threshold }
    }
}

/// Usage a tier allows per rolling window; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UsageLimit {
    pub tokens_per_minute: Option<f64>,
    pub tokens_per_day: Option<f64>,
    pub spend_per_day: Option<f64>,
}

/// Model tokens and what they cost: a reservation, a settlement, or their difference.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub tokens: f64,
    pub spend: f64,
}

impl Usage {
    pub const ZERO: Self = Self { tokens: 0.0, spend: 0.0 };
}

/// One usage meter: its field in the user's state, its window, and its share of a
/// [`Usage`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Meter {
    pub(crate) field: &'static str,
    /// Its place among the three, for backends that keep them in an array.
    pub(crate) slot: usize,
    pub(crate) cap: f64,
    pub(crate) window_seconds: f64,
    pub(crate) charge: f64,
}

const MINUTE: f64 = 60.0;
const DAY: f64 = 86_400.0;

impl UsageLimit {
    /// No usage limit at all.
    pub const NONE: Self = Self { tokens_per_minute: None, tokens_per_day: None, spend_per_day: None };

    pub fn is_empty(&self) -> bool {
        *self == Self::NONE
    }

    /// The meters this limit sets, each charged its part of `usage`; every backend
    /// keeps them under these field names.
    pub(crate) fn meters(&self, usage: Usage) -> impl Iterator<Item = Meter> {
        let all = [
            ("tpm", self.tokens_per_minute, MINUTE, usage.tokens),
            ("tpd", self.tokens_per_day, DAY, usage.tokens),
            ("spd", self.spend_per_day, DAY, usage.spend),
        ];
        all.into_iter().enumerate().filter_map(|(slot, (field, cap, window_seconds, charge))| {
            cap.map(|cap| Meter { field, slot, cap, window_seconds, charge })
        })
    }
}

/// Why a request was refused, as the API and the audit line's `reason` name it.
/// Serialized by its `as_str`, the one spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(into = "&'static str")]
pub enum Throttle {
    /// The request bucket is empty; it refills after `retry_after_ms`.
    RateLimited,
    /// The user's security debt is over the threshold; waiting for tokens will not help
    /// until it decays.
    Quarantined,
    /// The user has used the tier's model tokens for the minute or the day.
    TokenLimited,
    /// The user has spent the tier's daily budget.
    OverBudget,
    /// The user's concurrent streams are all open (`maxStreams`).
    TooManyStreams,
}

impl From<Throttle> for &'static str {
    fn from(why: Throttle) -> Self {
        why.as_str()
    }
}

impl Throttle {
    /// The name as serialized: the metric label of a would-throttle.
    pub fn as_str(self) -> &'static str {
        match self {
            Throttle::RateLimited => "rate_limited",
            Throttle::Quarantined => "quarantined",
            Throttle::TokenLimited => "token_limited",
            Throttle::OverBudget => "over_budget",
            Throttle::TooManyStreams => "too_many_streams",
        }
    }

    /// The refusal for a full meter, by its field.
    pub(crate) fn of_meter(field: &str) -> Self {
        if field == "spd" { Throttle::OverBudget } else { Throttle::TokenLimited }
    }
}

/// The limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Why the request was refused; `None` when it was admitted.
    pub refused: Option<Throttle>,
    /// Whole requests left in the bucket after this one.
    pub remaining: u64,
    /// When a refused request could succeed; 0 when allowed.
    pub retry_after_ms: u64,
}

impl Admission {
    pub fn allowed(&self) -> bool {
        self.refused.is_none()
    }

    pub(crate) fn refused(why: Throttle, retry_after_ms: u64, remaining: u64) -> Self {
        Self { refused: Some(why), remaining, retry_after_ms }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// Text, not a cause: it comes from several sources (the Redis client, a timeout, a
    /// script reply of the wrong shape), and its message is all a log line needs.
    #[error("rate-limit backend unavailable: {0}")]
    Unavailable(String),
}

pub type LimiterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LimiterError>> + Send + 'a>>;

/// A rate-limit backend. `key` is `<tier>:<analytical id>`: never a raw user id.
pub trait Limiter: Send + Sync {
    /// Takes one request from the bucket and charges `reserve` to the usage meters,
    /// unless the user is quarantined, the bucket is empty or a meter is already full:
    /// then nothing is taken.
    fn admit<'a>(
        &'a self,
        key: &'a str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
    ) -> LimiterFuture<'a, Admission>;

    /// Adds `delta` (negative when the reservation was too high) to the usage meters,
    /// once the real usage is known; no meter goes below empty. `debt` is the policy the
    /// user's debt decays by, for backends that decay it on every touch.
    fn settle<'a>(&'a self, key: &'a str, usage: UsageLimit, delta: Usage, debt: DebtPolicy) -> LimiterFuture<'a, ()>;

    /// Adds security-debt points to the user's decaying total.
    fn add_debt<'a>(&'a self, key: &'a str, points: f64, debt: DebtPolicy) -> LimiterFuture<'a, ()>;

    /// Takes lease `lease` on one of the user's `cap` concurrent streams, for at most
    /// `ttl` (so a guard that dies leaks no slot); `false` when all are taken.
    fn open_stream<'a>(&'a self, key: &'a str, lease: &'a str, cap: u32, ttl: Duration) -> LimiterFuture<'a, bool>;

    /// Gives a lease back when its stream ends.
    fn close_stream<'a>(&'a self, key: &'a str, lease: &'a str) -> LimiterFuture<'a, ()>;

    /// Sends what this pod holds back from the shared backend (security debt waiting for
    /// a later call), for a guard that is shutting down.
    fn flush(&self) -> LimiterFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    /// `Err(reason)` when the limiter cannot decide at all, which makes the pod unready.
    fn readiness(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// A meter's level after `elapsed` seconds of draining (a whole window drains a cap).
pub(crate) fn drain(level: f64, elapsed: f64, meter: &Meter) -> f64 {
    (level - elapsed.max(0.0) * meter.cap / meter.window_seconds).max(0.0)
}

/// Milliseconds until a meter at `level` is under its cap again.
pub(crate) fn meter_wait_ms(level: f64, meter: &Meter) -> u64 {
    ((level - meter.cap).max(0.0) * meter.window_seconds / meter.cap * 1000.0).ceil() as u64 + 1
}

/// Debt after `elapsed` seconds of decay.
pub fn decay(debt: f64, elapsed: f64, half_life: f64) -> f64 {
    if half_life <= 0.0 {
        return 0.0;
    }
    debt * 0.5f64.powf(elapsed.max(0.0) / half_life)
}

/// Milliseconds until `debt` decays to the threshold.
pub fn quarantine_ms(debt: f64, policy: DebtPolicy) -> u64 {
    if debt <= policy.quarantine_threshold || policy.quarantine_threshold <= 0.0 {
        return 0;
    }
    (policy.half_life_seconds * (debt / policy.quarantine_threshold).log2() * 1000.0).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_halves_every_half_life() {
        assert_eq!(decay(400.0, 600.0, 600.0), 200.0);
        assert_eq!(decay(400.0, 1200.0, 600.0), 100.0);
    }

    #[test]
    fn quarantine_lasts_until_decay_reaches_threshold() {
        let policy = DebtPolicy { half_life_seconds: 10.0, quarantine_threshold: 100.0 };
        assert_eq!(quarantine_ms(400.0, policy), 20_000);
        assert_eq!(quarantine_ms(50.0, policy), 0);
    }
}
