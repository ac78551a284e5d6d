//! Rate limiting and quarantine. A token bucket per `(tier, analytical id)` and, next to
//! it, the user's security debt, decaying with a half-life. One trait so the in-memory
//! and shared (Redis) backends are interchangeable and share these semantics.

mod access;
mod breaker;
mod failover;
mod local;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use breaker::CircuitBreaker;
pub use failover::FailoverLimiter;
pub use local::{LocalLimiter, spawn_sweeper};
pub use redis::{KEY_PREFIX, RedisBackend, bucket_key};

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

/// The limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// When a refused request could succeed; 0 when allowed.
    pub retry_after_ms: u64,
    /// Refused because of security debt, not because of the bucket.
    pub quarantined: bool,
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
    /// Takes one token unless the bucket is empty or the user is quarantined.
    fn admit<'a>(&'a self, key: &'a str, limit: BucketLimit, debt: DebtPolicy) -> LimiterFuture<'a, Admission>;

    /// Adds security-debt points to the user's decaying total.
    fn add_debt<'a>(&'a self, key: &'a str, points: f64, debt: DebtPolicy) -> LimiterFuture<'a, ()>;

    /// Takes lease `lease` on one of the user's `cap` concurrent streams, for at most
    /// `ttl` (so a guard that dies leaks no slot); `false` when all are taken.
    fn open_stream<'a>(&'a self, key: &'a str, lease: &'a str, cap: u32, ttl: Duration) -> LimiterFuture<'a, bool>;

    /// Gives a lease back when its stream ends.
    fn close_stream<'a>(&'a self, key: &'a str, lease: &'a str) -> LimiterFuture<'a, ()>;

    /// `Err(reason)` when the limiter cannot decide at all, which makes the pod unready.
    fn readiness(&self) -> Result<(), &'static str> {
        Ok(())
    }
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
