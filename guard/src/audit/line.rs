use std::time::SystemTime;

use godel_config::Severity;
use serde::Serialize;

use crate::engine::{Decision, Input};
use crate::limiter::Throttle;

/// The pseudonymous identity of a request's user, as its audit lines carry it.
#[derive(Clone, Debug)]
pub struct Pseudonyms {
    /// A keyed hash: the same user always has the same one (statistics, rate limits).
    pub analytical_id: String,
    /// The user id encrypted under the current audit key: only a key holder can open it.
    pub audit_id: String,
    pub tier: String,
}

/// What was done, as the audit line's `decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuditDecision {
    Allow,
    Block,
    Throttle,
    /// An answer whose findings were masked.
    Redact,
}

impl From<Decision> for AuditDecision {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Allow => AuditDecision::Allow,
            Decision::Block => AuditDecision::Block,
            Decision::Throttle(_) => AuditDecision::Throttle,
        }
    }
}

/// Which way the text a line is about went; absent for the request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Direction {
    /// The model's answer.
    Answer,
}

/// One audit record. Findings carry trap, rule and severity only: never the matched
/// text, which may be the very secret the trap caught.
#[derive(Debug, Serialize)]
pub(crate) struct AuditLine<'a> {
    #[serde(serialize_with = "rfc3339")]
    pub ts: SystemTime,
    pub request_id: &'a str,
    pub analytical_id: &'a str,
    pub audit_id: &'a str,
    pub tier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    pub decision: AuditDecision,
    /// Why a request was throttled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Throttle>,
    /// In shadow mode (`enforce: false`), the throttle the request would have had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_throttle: Option<Throttle>,
    pub findings: Vec<AuditFinding<'a>>,
    /// Model tokens charged: on a request's line its reservation, on an answer's the
    /// upstream's count it was settled to. Absent where no limit meters tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    pub latency_ms: f64,
}

impl<'a> AuditLine<'a> {
    /// The one way a line is made: about `who`'s request `request_id`, stamped now, with
    /// `findings`; callers set what else they know (direction, reason, latency).
    pub(crate) fn new(
        request_id: &'a str,
        who: &'a Pseudonyms,
        decision: AuditDecision,
        findings: Vec<AuditFinding<'a>>,
    ) -> Self {
        Self {
            ts: SystemTime::now(),
            request_id,
            analytical_id: &who.analytical_id,
            audit_id: &who.audit_id,
            tier: &who.tier,
            direction: None,
            decision,
            reason: None,
            would_throttle: None,
            findings,
            tokens: None,
            latency_ms: 0.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct AuditFinding<'a> {
    pub trap: godel_traps::TrapKind,
    pub rule: &'a str,
    pub severity: Severity,
    /// `instructions` or `untrusted` for a finding outside the user's prompt; absent
    /// for the prompt's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
}

fn rfc3339<S: serde::Serializer>(ts: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*ts))
}
