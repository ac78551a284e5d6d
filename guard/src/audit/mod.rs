//! The audit trail: one JSON line per decision on stdout (for Loki or Elasticsearch),
//! carrying a keyed hash of the user for statistics and an encrypted copy of the user
//! id that only a key holder can open.

mod cipher;
mod line;
mod sink;

pub use cipher::{AuditCipher, AuditIdError, open};
pub use line::{AuditFinding, AuditLine};
pub use sink::{AuditSink, AuditWriter};
