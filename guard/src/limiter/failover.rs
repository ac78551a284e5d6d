//! The production limiter: Redis first; when Redis cannot answer, the policy's failure
//! mode (`local`: in-memory buckets with each tier's limits divided by the replica count,
//! so the fleet as a whole still holds about the global limit; `open`: allow; `closed`:
//! throttle). A breaker keeps a dead Redis from adding its timeout to every request, and
//! a probe returns to Redis within a fraction of a second once it answers again. With
//! `leaseMs` above 0 a call also leases some of the user's next requests to this pod
//! (`lease.rs`), and security debt goes with the next call instead of one of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use godel_config::{FailureMode, RedisConfig};

use super::lease::{Begin, DueDebt, Leases};
use super::redis::RedisBackend;
use super::{
    Admission, BucketLimit, CircuitBreaker, DebtPolicy, Limiter, LimiterError, LimiterFuture, LocalLimiter, Throttle,
    Usage, UsageLimit,
};
use crate::metrics::{BackendLabels, Metrics};

const PROBE_EVERY: Duration = Duration::from_millis(250);

pub struct FailoverLimiter {
    redis: RedisBackend,
    breaker: CircuitBreaker,
    mode: FailureMode,
    replicas: f64,
    local: LocalLimiter,
    /// `None` when `leaseMs` is 0: every request is one call.
    leases: Option<Leases>,
    metrics: Arc<Metrics>,
}

impl FailoverLimiter {
    /// Connects (without failing when Redis is down: the guard then starts on its
    /// failure mode) and starts the recovery probe. Needs a Tokio runtime.
    pub async fn start(
        config: &RedisConfig,
        mode: FailureMode,
        replicas: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, LimiterError> {
        let limiter = Arc::new(Self {
            redis: RedisBackend::new(config)?,
            breaker: CircuitBreaker::default(),
            mode,
            replicas: f64::from(replicas.max(1)),
            local: LocalLimiter::new(),
            leases: (config.lease_ms > 0).then(|| Leases::new(Duration::from_millis(config.lease_ms), replicas)),
            metrics,
        });
        match limiter.redis.ping().await {
            Ok(()) => tracing::info!(mode = ?config.mode, "rate limits shared through Redis"),
            Err(e) => {
                tracing::warn!(error = %e, failure_mode = ?mode, "Redis unreachable at start-up; using the failure mode until it answers");
                limiter.open();
            }
        }
        tokio::spawn(probe(Arc::downgrade(&limiter)));
        if let Some(leases) = &limiter.leases {
            tokio::spawn(flush_due_debt(Arc::downgrade(&limiter), leases.lifetime() / 4));
        }
        Ok(limiter)
    }

    /// The in-memory buckets it falls back on (swept by the server's sweeper).
    pub fn local(&self) -> &LocalLimiter {
        &self.local
    }

    fn open(&self) {
        self.breaker.trip();
        self.metrics.fallback_active.set(1);
    }

    fn record_failure(&self, e: &LimiterError) {
        self.metrics.backend_errors.get_or_create(&BackendLabels { backend: "redis" }).inc();
        if self.breaker.failure() {
            self.metrics.fallback_active.set(1);
            tracing::warn!(error = %e, failure_mode = ?self.mode, "Redis failing; circuit open, using the failure mode");
        }
    }

    /// This pod's share of a tier's usage limits while it decides alone.
    fn usage_share(&self, usage: UsageLimit) -> UsageLimit {
        let share = |cap: Option<f64>| cap.map(|cap| cap / self.replicas);
        UsageLimit {
            tokens_per_minute: share(usage.tokens_per_minute),
            tokens_per_day: share(usage.tokens_per_day),
            spend_per_day: share(usage.spend_per_day),
        }
    }

    fn fallback(
        &self,
        bucket: &str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
    ) -> Admission {
        match self.mode {
            FailureMode::Local => {
                let share = BucketLimit {
                    rate_per_second: limit.rate_per_second / self.replicas,
                    burst: (limit.burst / self.replicas).max(1.0),
                };
                let usage = self.usage_share(usage);
                self.local.admit_at(bucket, share, usage, reserve, debt, Instant::now())
            }
            FailureMode::Open => Admission { refused: None, remaining: 0, retry_after_ms: 0 },
            FailureMode::Closed => Admission::refused(Throttle::RateLimited, PROBE_EVERY.as_millis() as u64 * 4, 0),
        }
    }

    /// An admission through this pod's lease on the user's bucket, or one call that
    /// carries the pending debt, gives back what an expired lease left and asks for the
    /// next lease.
    async fn admit_leasing(
        &self,
        leases: &Leases,
        bucket: &str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
    ) -> Result<Admission, LimiterError> {
        let mut waited = false;
        let ask = loop {
            match leases.begin(bucket, limit, !usage.is_empty(), debt, Instant::now(), waited) {
                Begin::Leased(remaining) => {
                    self.metrics.leased.inc();
                    return Ok(Admission { refused: None, remaining, retry_after_ms: 0 });
                }
                Begin::Call(ask) => break ask,
                Begin::Wait(answered) => {
                    // Listening before looking again, so an answer in between is not missed.
                    let notified = answered.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if leases.calling(bucket) {
                        // Bounded: a call that outlives a lifetime is not worth waiting for.
                        let _ = tokio::time::timeout(leases.lifetime(), notified).await;
                    }
                    waited = true;
                }
            }
        };
        // Wakes the requests waiting for this call however it ends, a dropped request
        // (its client gone) included.
        let mut call = Unanswered { leases, bucket, asked: ask.want > 0, answered: false };
        match self.redis.admit_leasing(bucket, limit, usage, reserve, debt, ask).await {
            Ok(leased) => {
                leases.granted(bucket, &leased, call.asked, Instant::now());
                call.answered = true;
                Ok(Admission { remaining: leased.admission.remaining + u64::from(leased.granted), ..leased.admission })
            }
            Err(e) => {
                // The debt it carried stays with this pod's fallback buckets.
                if ask.debt > 0.0 {
                    self.local.add_debt_at(bucket, ask.debt, debt, Instant::now());
                }
                Err(e)
            }
        }
    }

    /// Debt points to Redis, or to the fallback buckets when it cannot take them.
    async fn send_debt(&self, bucket: &str, points: f64, debt: DebtPolicy) {
        if !self.breaker.is_open() {
            match self.redis.add_debt(bucket, points, debt).await {
                Ok(after) => {
                    if let Some(leases) = &self.leases {
                        leases.sent(bucket, after);
                    }
                    return;
                }
                Err(e) => self.record_failure(&e),
            }
        }
        self.local.add_debt_at(bucket, points, debt, Instant::now());
    }

    async fn send_all(&self, due: Vec<DueDebt>) {
        for (bucket, points, debt) in due {
            self.send_debt(&bucket, points, debt).await;
        }
    }
}

/// A lease call on its way: dropped without an answer (it failed, or the request was
/// cancelled mid-call), it lets the requests waiting for it go on.
struct Unanswered<'a> {
    leases: &'a Leases,
    bucket: &'a str,
    /// It asked for a lease: requests may be waiting for it.
    asked: bool,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.leases.failed(self.bucket, self.asked);
        }
    }
}

/// Every quarter of a lease lifetime, sends the debt of users who made no call since it
/// was found. Ends when the limiter is dropped.
async fn flush_due_debt(limiter: std::sync::Weak<FailoverLimiter>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(limiter) = limiter.upgrade() else { return };
        if let Some(leases) = &limiter.leases {
            limiter.send_all(leases.due(Instant::now(), leases.lifetime())).await;
        }
    }
}

/// While the breaker is open, pings Redis; closes the breaker when it answers. Ends
/// when the limiter is dropped.
async fn probe(limiter: std::sync::Weak<FailoverLimiter>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(limiter) = limiter.upgrade() else { return };
        if !limiter.breaker.is_open() {
            continue;
        }
        if limiter.redis.ping().await.is_ok() && limiter.breaker.close() {
            limiter.metrics.fallback_active.set(0);
            tracing::info!("Redis answers again; rate limits shared through Redis");
        }
    }
}

impl Limiter for FailoverLimiter {
    fn admit<'a>(
        &'a self,
        bucket: &'a str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
    ) -> LimiterFuture<'a, Admission> {
        Box::pin(async move {
            if !self.breaker.is_open() {
                let admitted = match &self.leases {
                    Some(leases) => self.admit_leasing(leases, bucket, limit, usage, reserve, debt).await,
                    None => self.redis.admit(bucket, limit, usage, reserve, debt).await,
                };
                match admitted {
                    Ok(admission) => {
                        self.breaker.success();
                        return Ok(admission);
                    }
                    Err(e) => self.record_failure(&e),
                }
            }
            Ok(self.fallback(bucket, limit, usage, reserve, debt))
        })
    }

    fn settle<'a>(
        &'a self,
        bucket: &'a str,
        usage: UsageLimit,
        delta: Usage,
        debt: DebtPolicy,
    ) -> LimiterFuture<'a, ()> {
        Box::pin(async move {
            if !self.breaker.is_open() {
                match self.redis.settle(bucket, usage, delta).await {
                    Ok(()) => return Ok(()),
                    Err(e) => self.record_failure(&e),
                }
            }
            if self.mode == FailureMode::Local {
                self.local.settle_at(bucket, self.usage_share(usage), delta, debt, Instant::now());
            }
            Ok(())
        })
    }

    fn add_debt<'a>(&'a self, bucket: &'a str, points: f64, debt: DebtPolicy) -> LimiterFuture<'a, ()> {
        Box::pin(async move {
            if self.breaker.is_open() {
                self.local.add_debt_at(bucket, points, debt, Instant::now());
                return Ok(());
            }
            let points = match &self.leases {
                Some(leases) => match leases.add_debt(bucket, points, debt, Instant::now()) {
                    Some(now) => now,
                    None => return Ok(()),
                },
                None => points,
            };
            self.send_debt(bucket, points, debt).await;
            Ok(())
        })
    }

    fn flush<'a>(&'a self) -> LimiterFuture<'a, ()> {
        Box::pin(async move {
            if let Some(leases) = &self.leases {
                self.send_all(leases.due(Instant::now(), Duration::ZERO)).await;
            }
            Ok(())
        })
    }

    fn open_stream<'a>(&'a self, key: &'a str, lease: &'a str, cap: u32, ttl: Duration) -> LimiterFuture<'a, bool> {
        Box::pin(async move {
            if !self.breaker.is_open() {
                match self.redis.open_stream(key, lease, cap, ttl).await {
                    Ok(held) => {
                        self.breaker.success();
                        return Ok(held);
                    }
                    Err(e) => self.record_failure(&e),
                }
            }
            Ok(match self.mode {
                // Each pod's share of the cap, at least one stream.
                FailureMode::Local => {
                    let share = (f64::from(cap) / self.replicas).ceil().max(1.0) as u32;
                    self.local.open_stream_at(key, lease, share, ttl, Instant::now())
                }
                FailureMode::Open => true,
                FailureMode::Closed => false,
            })
        })
    }

    fn close_stream<'a>(&'a self, key: &'a str, lease: &'a str) -> LimiterFuture<'a, ()> {
        Box::pin(async move {
            // Both places: a lease taken before the breaker opened lives in Redis.
            self.local.close_stream_now(key, lease);
            if !self.breaker.is_open()
                && let Err(e) = self.redis.close_stream(key, lease).await
            {
                self.record_failure(&e);
            }
            Ok(())
        })
    }

    fn readiness(&self) -> Result<(), &'static str> {
        if self.mode == FailureMode::Closed && self.breaker.is_open() {
            return Err("rate-limit backend unreachable and failureMode is closed");
        }
        Ok(())
    }
}
