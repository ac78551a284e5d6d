//! The guard's Prometheus metrics. Names and labels are a contract with the alert rules
//! and the dashboard; label values come only from closed sets (configured tiers, trap
//! and severity names, routes), never from a user id, prompt or request id.

mod process;

use prometheus_client::encoding::EncodeLabelSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub tier: String,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// A finding in a model's answer and what the policy did with the answer
/// (`proxy.output.action`: `flag`, `redact` or `block`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerFindingLabels {
    pub trap: &'static str,
    pub severity: &'static str,
    pub action: &'static str,
}

/// A request's trap finding: `input` is the text it was found in, `prompt` (the user's),
/// `instructions` (the application's) or `untrusted` (tool results, documents).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrapFindingLabels {
    pub trap: &'static str,
    pub severity: &'static str,
    pub input: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// How the upstream answered: its status class (`2xx`, `4xx`, `5xx`, ...), or `timeout`
/// and `unreachable` when it did not.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub outcome: &'static str,
}

/// A request refused by its tier's limits, and which one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    pub tier: String,
    pub reason: &'static str,
}

/// An answer withheld by `proxy.output.action: block`, by tier.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: String,
}

/// A look at the audit key's source: `rotated` (a new keyring in use), `refused` (it
/// held the salt) or `failed` (unreadable; the current keys stay).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyReloadLabels {
    pub outcome: &'static str,
}

/// What a key reload can come to, primed at zero where reloading is on.
pub const KEY_RELOAD_OUTCOMES: [&str; 3] = ["rotated", "refused", "failed"];

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: HistogramFamily,
    pub findings: Family<TrapFindingLabels, Counter>,
    pub answer_findings: Family<AnswerFindingLabels, Counter>,
    pub answers_withheld: Family<TierLabels, Counter>,
    pub upstream: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    pub throttles: Family<ThrottleLabels, Counter>,
    pub key_reloads: Family<KeyReloadLabels, Counter>,
    pub security_debt: Counter,
    pub health: Gauge,
    pub backend_errors: Family<BackendLabels, Counter>,
    pub fallback_active: Gauge,
    pub leased: Counter,
    pub shadow_throttles: Family<ShadowLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub spend: Family<SpendLabels, Counter<f64, AtomicU64>>,
}

/// Seconds until the upstream's answer head (or its failure): a model's time to its
/// first byte, from 5 ms to a minute.
fn upstream_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

/// Model tokens by tier, model family (a `rateLimit.costs` entry or `other`) and kind
/// (`input`, `output`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub tier: String,
    pub family: String,
    pub kind: &'static str,
}

/// Spend by tier and model family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpendLabels {
    pub tier: String,
    pub family: String,
}

/// A request a tier in shadow mode would have throttled, and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub tier: String,
    pub reason: &'static str,
}

/// Latency buckets from 50 µs: the guard's own work is sub-millisecond, and the
/// interesting tail is a slow limiter backend.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("godel_requests", "Decisions made, by tier and decision", requests.clone());
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register("godel_request_duration_seconds", "HTTP request latency by route", duration.clone());
        let findings = Family::<TrapFindingLabels, Counter>::default();
        registry.register(
            "godel_trap_findings",
            "Trap findings by trap, severity and the input they were found in (prompt, instructions, untrusted)",
            findings.clone(),
        );
        let answer_findings = Family::<AnswerFindingLabels, Counter>::default();
        registry.register(
            "godel_answer_findings",
            "Findings in model answers relayed by the proxy, by trap, severity and the action taken on the answer",
            answer_findings.clone(),
        );
        let answers_withheld = Family::<TierLabels, Counter>::default();
        registry.register(
            "godel_answers_withheld",
            "Model answers withheld (proxy.output.action: block), whole or cut off mid-stream, by tier",
            answers_withheld.clone(),
        );
        let upstream: Family<UpstreamLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(upstream_histogram);
        registry.register(
            "godel_upstream_duration_seconds",
            "Seconds until the upstream API's answer head, by status class or failure (timeout, unreachable)",
            upstream.clone(),
        );
        let throttles = Family::<ThrottleLabels, Counter>::default();
        registry.register(
            "godel_throttles",
            "Requests refused by their tier's limits, by tier and reason (rate_limited, quarantined, \
             token_limited, over_budget, too_many_streams)",
            throttles.clone(),
        );
        let key_reloads = Family::<KeyReloadLabels, Counter>::default();
        registry.register(
            "godel_key_reloads",
            "Audit key source changes seen by the reloader, by outcome (rotated, refused, failed)",
            key_reloads.clone(),
        );
        let security_debt = Counter::default();
        registry.register(
            "godel_security_debt",
            "Security-debt points accrued (low 1, medium 5, high 20, critical 100)",
            security_debt.clone(),
        );
        let health = Gauge::default();
        registry.register("godel_health_status", "1 when the guard is ready to serve, else 0", health.clone());
        let backend_errors = Family::<BackendLabels, Counter>::default();
        registry.register(
            "godel_ratelimit_backend_errors",
            "Failed calls to the rate-limit backend",
            backend_errors.clone(),
        );
        let fallback_active = Gauge::default();
        registry.register(
            "godel_ratelimit_fallback_active",
            "1 while the guard limits with its local fallback instead of the shared backend",
            fallback_active.clone(),
        );
        let leased = Counter::default();
        registry.register(
            "godel_ratelimit_leased",
            "Requests admitted from this pod's lease on the user's shared bucket, without a call to Redis",
            leased.clone(),
        );
        let shadow_throttles = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "godel_ratelimit_shadow_throttles",
            "Requests a tier in shadow mode (enforce: false) allowed but would have throttled, by tier and reason",
            shadow_throttles.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "godel_tokens",
            "Model tokens of answered requests, as the upstream counted them, by tier, model family and kind",
            tokens.clone(),
        );
        let spend = Family::<SpendLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "godel_spend",
            "What answered requests cost by the policy's weights (rateLimit.costs), by tier and model family",
            spend.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        Self {
            registry,
            requests,
            duration,
            findings,
            answer_findings,
            answers_withheld,
            upstream,
            throttles,
            key_reloads,
            security_debt,
            health,
            backend_errors,
            fallback_active,
            leased,
            shadow_throttles,
            tokens,
            spend,
        }
    }

    /// Creates the zero-valued series that alerts and dashboards expect to exist
    /// before the first event.
    /// `shared_backend` names the limiter backend that can fail (Redis); in-memory
    /// buckets cannot, so they get no error series.
    pub fn prime(&self, tiers: &[String], shared_backend: Option<&'static str>) {
        for tier in tiers {
            for decision in ["allow", "block", "throttle"] {
                self.requests.get_or_create(&RequestLabels { tier: tier.clone(), decision }).inc_by(0);
            }
        }
        if let Some(backend) = shared_backend {
            self.backend_errors.get_or_create(&BackendLabels { backend }).inc_by(0);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
