//! The audit trail: one JSON line per decision on stdout (for Loki or Elasticsearch),
//! carrying a keyed hash of the user for statistics and an encrypted copy of the user
//! id that only a key holder can open.

mod cipher;
mod keyring;
mod line;
mod sink;

pub(crate) use keyring::{Keyring, SharedKeyring};
pub(crate) use line::{AuditDecision, AuditFinding, AuditLine, Direction, Pseudonyms};
pub(crate) use sink::{AuditSink, AuditWriter};
