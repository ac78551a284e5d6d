//! Tools for whoever holds the audit key. `decrypt` turns audit ids back into user ids
//! (to answer a lawful request for one user's records); lines that cannot be opened are
//! passed through with an `audit_error` field, so one bad line never hides the rest.
//! `new_data_key` asks KMS for a data key and prints only its ciphertext, for storage.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use godel_config::{FileKeySource, KeySource, KmsKeySource};
use serde_json::Value;

use crate::audit::Keyring;
use crate::keys::{self, KeyError, KeyRole, KmsClient};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("give at least one --key-file or --kms-ciphertext-file")]
    NoKeys,
}

/// Where the key holder's keys come from.
pub struct KeyArgs {
    pub key_files: Vec<PathBuf>,
    pub kms_ciphertext_files: Vec<PathBuf>,
    pub kms_region: Option<String>,
    pub kms_endpoint: Option<String>,
}

/// Builds one keyring from every given file, in order.
pub async fn keyring(args: &KeyArgs) -> Result<Keyring, ToolError> {
    let mut sources: Vec<KeySource> =
        args.key_files.iter().map(|p| KeySource::File(FileKeySource { path: p.display().to_string() })).collect();
    sources.extend(args.kms_ciphertext_files.iter().map(|p| {
        KeySource::Kms(KmsKeySource {
            ciphertext_file: p.display().to_string(),
            key_id: None,
            region: args.kms_region.clone(),
            endpoint: args.kms_endpoint.clone(),
        })
    }));
    let mut secrets = Vec::new();
    for source in &sources {
        secrets.extend(keys::load(Some(source), KeyRole::AuditKey, true).await?.secrets);
    }
    if secrets.is_empty() {
        return Err(ToolError::NoKeys);
    }
    Ok(Keyring::new(&secrets))
}

pub fn decrypt(ring: &Keyring, input: impl BufRead, mut output: impl Write) -> Result<(), ToolError> {
    for line in input.lines() {
        let line = line?;
        let Ok(mut record) = serde_json::from_str::<Value>(&line) else {
            writeln!(output, "{line}")?;
            continue;
        };
        let opened = match record.get("audit_id").and_then(Value::as_str) {
            Some(id) => ring.open(id).map_err(|e| e.to_string()),
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

/// Generates a data key under `kms_key_id` and returns the ciphertext line to store.
pub async fn new_data_key(kms_key_id: &str, region: Option<&str>, endpoint: Option<&str>) -> Result<String, ToolError> {
    let client = KmsClient::new(region, endpoint).await;
    Ok(keys::generate_data_key(&client, kms_key_id).await?)
}
