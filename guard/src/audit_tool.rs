//! `godel-guard audit decrypt`: for the key holder answering a lawful request, turns
//! audit ids back into user ids. Lines that cannot be opened are passed through with
//! an `audit_error` field, so one bad line never hides the rest.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use godel_crds::{FileKeySource, KeySource};
use serde_json::Value;

use crate::audit::{self, AuditCipher};
use crate::keys::{self, KeyError, KeyRole};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub fn decrypt(key_files: &[PathBuf], input: impl BufRead, mut output: impl Write) -> Result<(), ToolError> {
    let ring = key_files
        .iter()
        .map(|path| {
            let source = KeySource::File(FileKeySource { path: path.display().to_string() });
            keys::load(Some(&source), KeyRole::AuditKey, true).map(|(key, _)| AuditCipher::new(&key))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for line in input.lines() {
        let line = line?;
        let Ok(mut record) = serde_json::from_str::<Value>(&line) else {
            writeln!(output, "{line}")?;
            continue;
        };
        let opened = match record.get("audit_id").and_then(Value::as_str) {
            Some(id) => audit::open(&ring, id).map_err(|e| e.to_string()),
            None => Err("line has no audit_id".to_owned()),
        };
        if let Some(fields) = record.as_object_mut() {
            match opened {
                Ok(user_id) => fields.insert("user_id".into(), Value::String(user_id)),
                Err(reason) => fields.insert("audit_error".into(), Value::String(reason)),
            };
        }
        writeln!(output, "{record}")?;
    }
    Ok(())
}
