use std::time::SystemTime;

use godel_crds::Severity;
use serde::Serialize;

/// One audit record. Findings carry trap, rule and severity only: never the matched
/// text, which may be the very secret the trap caught.
#[derive(Debug, Serialize)]
pub struct AuditLine<'a> {
    #[serde(serialize_with = "rfc3339")]
    pub ts: SystemTime,
    pub request_id: &'a str,
    pub analytical_id: &'a str,
    pub audit_id: &'a str,
    pub tier: &'a str,
    /// `answer` on the line about a model's answer; absent on the request's own line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'a str>,
    pub decision: &'a str,
    /// `rate_limited` or `quarantined` for a throttle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub findings: Vec<AuditFinding<'a>>,
    pub latency_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct AuditFinding<'a> {
    pub trap: &'a str,
    pub rule: &'a str,
    pub severity: Severity,
    /// `instructions` or `untrusted` for a finding outside the user's prompt; absent
    /// for the prompt's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'static str>,
}

fn rfc3339<S: serde::Serializer>(ts: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*ts))
}
