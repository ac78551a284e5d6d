//! The operator's own metrics: reconciles by result, their duration, leadership.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, `invalid` (the spec cannot be applied: status says why) or `error` (the
    /// pass failed and is retried).
    pub result: &'static str,
    /// The condition reason for `invalid`, the failure's kind for `error`, empty for `ok`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The owned object's kind (`Deployment`, `Service`, …).
    pub kind: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Family<ResultLabels, Counter>,
    /// Owned objects put back after someone changed or deleted them.
    pub drift_corrections: Family<KindLabels, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
    /// Set once the leader's watch caches have synced: what `/readyz` reports.
    pub synced: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "godel_operator_reconciles",
            "Reconciles by result (ok, invalid, error) and reason",
            reconciles.clone(),
        );
        let drift_corrections = Family::<KindLabels, Counter>::default();
        registry.register(
            "godel_operator_drift_corrections",
            "Owned objects put back after a change or deletion by someone else, by kind",
            drift_corrections.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register("godel_operator_reconcile_duration_seconds", "Reconcile duration", duration.clone());
        let leader = Gauge::default();
        registry.register("godel_operator_leader", "1 while this replica holds the leader Lease", leader.clone());
        Self { registry: Arc::new(registry), reconciles, drift_corrections, duration, leader, synced: Arc::default() }
    }
}

impl Metrics {
    pub fn count(&self, result: &'static str, reason: &'static str) {
        self.reconciles.get_or_create(&ResultLabels { result, reason }).inc();
    }

    pub fn drift(&self, kind: &str) {
        self.drift_corrections.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
    }

    /// A standby replica is ready (it is healthy and waits for the Lease); the leader is
    /// ready once its watch caches have synced, so it reconciles from a full picture.
    pub fn ready(&self) -> bool {
        self.leader.get() == 0 || self.synced.load(Ordering::SeqCst)
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
