//! AWS KMS: data keys are generated once (`godel-guard audit new-data-key`), stored only
//! as KMS ciphertext (in a Secret), and decrypted into memory at start-up. The plaintext
//! key never touches disk or the pod spec; revoking `kms:Decrypt` revokes the key.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use godel_config::KmsKeySource;

use super::{KeyError, KeyRole, Secret, checked};

/// A KMS client from the default credential chain (environment, IRSA web identity,
/// profile, container or instance metadata), with an optional region and endpoint.
pub(crate) struct KmsClient(aws_sdk_kms::Client);

impl KmsClient {
    pub(crate) async fn new(region: Option<&str>, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        );
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Self(aws_sdk_kms::Client::new(&loader.load().await))
    }
}

pub(super) async fn decrypt_data_keys(
    config: &KmsKeySource,
    blobs: &str,
    role: KeyRole,
) -> Result<Vec<Secret>, KeyError> {
    let field = role.config_field();
    let client = KmsClient::new(config.region.as_deref(), config.endpoint.as_deref()).await;
    let mut secrets = Vec::new();
    for line in blobs.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let blob = STANDARD.decode(line).map_err(|_| KeyError::Malformed {
            field,
            reason: "the KMS ciphertext file must hold base64 blobs, one per line",
        })?;
        let output = client
            .0
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .set_key_id(config.key_id.clone())
            .send()
            .await
            .map_err(|e| KeyError::Kms { field, reason: format!("Decrypt failed: {}", DisplayErrorContext(&e)) })?;
        let plaintext =
            output.plaintext.ok_or(KeyError::Kms { field, reason: "Decrypt returned no plaintext".into() })?;
        secrets.push(checked(plaintext.into_inner(), role)?);
        if role == KeyRole::Salt {
            break;
        }
    }
    if secrets.is_empty() {
        return Err(KeyError::Malformed { field, reason: "the KMS ciphertext file holds no data key" });
    }
    Ok(secrets)
}

/// Asks KMS for a new AES-256 data key under `key_id` and returns its ciphertext blob,
/// base64: the line to put first in the ciphertext file. The plaintext is dropped.
pub(crate) async fn generate_data_key(client: &KmsClient, key_id: &str) -> Result<String, KeyError> {
    let field = "audit.key";
    let output =
        client.0.generate_data_key().key_id(key_id).key_spec(DataKeySpec::Aes256).send().await.map_err(|e| {
            KeyError::Kms { field, reason: format!("GenerateDataKey failed: {}", DisplayErrorContext(&e)) }
        })?;
    let blob = output.ciphertext_blob.ok_or(KeyError::Kms { field, reason: "no ciphertext returned".into() })?;
    Ok(STANDARD.encode(blob.into_inner()))
}
