//! A finding as the guard's HTTP API writes it, in `/v1/inspect` verdicts and the
//! proxy's refusals. Its own type, so the engine's [`Finding`] can change without
//! changing the wire: `{"trap", "rule", "severity", "action", "start", "end"}`.

use godel_config::{Action, Severity};
use godel_traps::{Finding, TrapKind};
use serde::Serialize;

#[derive(Serialize)]
pub(crate) struct WireFinding<'a> {
    trap: TrapKind,
    rule: &'a str,
    severity: Severity,
    action: Action,
    /// Byte offsets into the text as the client sent it.
    start: usize,
    end: usize,
}

impl<'a> From<&'a Finding> for WireFinding<'a> {
    fn from(f: &'a Finding) -> Self {
        Self { trap: f.trap, rule: &f.rule, severity: f.severity, action: f.action, start: f.start, end: f.end }
    }
}

/// The wire form of a list of findings.
pub(crate) fn wire(findings: &[Finding]) -> Vec<WireFinding<'_>> {
    findings.iter().map(WireFinding::from).collect()
}
