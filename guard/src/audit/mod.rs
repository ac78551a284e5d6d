//! The audit trail: one JSON line per decision on stdout (for Loki or Elasticsearch),
//! carrying a keyed hash of the user for statistics and an encrypted copy of the user
//! id that only a key holder can open.

mod cipher;
mod keyring;
mod line;
mod sink;

pub use cipher::{AuditCipher, AuditIdError};
pub use keyring::{Keyring, SharedKeyring};
pub use line::{AuditDecision, AuditFinding, AuditLine, Direction, Pseudonyms};
pub use sink::{AuditSink, AuditWriter};
