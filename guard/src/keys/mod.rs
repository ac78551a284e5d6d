//! Loading the two secrets the guard holds: the audit keyring (AES-256-GCM, encrypts
//! user ids into audit ids) and the pseudonymization salt (the HMAC key behind analytical
//! ids). Sources: AWS KMS, a file (Vault Agent injector output or a mounted Secret),
//! Google Secret Manager, and, for development only, an environment variable. Secret
//! bytes live in zeroized buffers and never reach a log or an error message.

mod gcp;
mod kms;
mod watch;

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use godel_config::KeySource;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub(crate) use kms::{KmsClient, generate_data_key};
pub(crate) use watch::Reloader;

/// Secret bytes; `Debug` prints a placeholder so a stray `{:?}` cannot leak them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Fresh random bytes for development runs without a configured key.
    pub fn random(len: usize) -> Self {
        use aes_gcm::aead::rand_core::RngCore;
        let mut bytes = vec![0u8; len];
        aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
        Self::new(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([{} bytes redacted])", self.0.len())
    }
}

/// Which secret is being loaded: they differ in size rules and default variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyRole {
    AuditKey,
    Salt,
}

impl KeyRole {
    pub(crate) fn config_field(self) -> &'static str {
        match self {
            KeyRole::AuditKey => "audit.key",
            KeyRole::Salt => "audit.salt",
        }
    }

    fn default_var(self) -> &'static str {
        match self {
            KeyRole::AuditKey => "GODEL_KEY",
            KeyRole::Salt => "GODEL_SALT",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{field} is not configured and the guard runs in production mode: set it to \
         {{kms: {{ciphertextFile: ...}}}}, {{file: {{path: ...}}}} (a Vault Agent–injected file or \
         a mounted Secret) or {{gcp: {{secretVersion: ...}}}}"
    )]
    MissingInProduction { field: &'static str },
    #[error("{field} comes from the environment variable {var}, which production mode refuses: use kms, file or gcp")]
    EnvInProduction { field: &'static str, var: String },
    #[error("{field}: environment variable {var} is not set")]
    EnvMissing { field: &'static str, var: String },
    /// Only the error's kind is shown: the OS message adds nothing a reader needs.
    #[error("{field}: cannot read {path}: {}", .source.kind())]
    Unreadable {
        field: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: {reason}")]
    Malformed { field: &'static str, reason: &'static str },
    /// The SDK's error, flattened with its whole context (the SDK's own `source` chain
    /// stops at "service error"), which is what an operator needs in one log line.
    #[error("{field}: AWS KMS: {reason}")]
    Kms { field: &'static str, reason: String },
    /// Flattened like `Kms`; the HTTP client's error is stripped of its URL first.
    #[error("{field}: Google Secret Manager: {reason}")]
    Gcp { field: &'static str, reason: String },
    #[error("audit.salt must be a different secret from audit.key")]
    SaltIsKey,
}

/// Where a loaded secret came from, for the start-up log (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    File(String),
    Kms(String),
    Gcp(String),
    Env(String),
    Ephemeral,
}

/// The secrets of one source: for the audit key, a keyring (first entry encrypts);
/// for the salt, its first entry is the salt.
pub(crate) struct Loaded {
    pub secrets: Vec<Secret>,
    pub origin: Origin,
}

/// Loads one source. `None` means "not configured": an ephemeral random secret,
/// refused in production mode.
pub(crate) async fn load(source: Option<&KeySource>, role: KeyRole, production: bool) -> Result<Loaded, KeyError> {
    let field = role.config_field();
    match source {
        None if production => Err(KeyError::MissingInProduction { field }),
        None => Ok(Loaded { secrets: vec![Secret::random(32)], origin: Origin::Ephemeral }),
        Some(KeySource::Env(env)) => {
            let var = env.var.clone().unwrap_or_else(|| role.default_var().to_owned());
            if production {
                return Err(KeyError::EnvInProduction { field, var });
            }
            let value =
                Zeroizing::new(std::env::var(&var).map_err(|_| KeyError::EnvMissing { field, var: var.clone() })?);
            Ok(Loaded { secrets: decode_ring(&value, role)?, origin: Origin::Env(var) })
        }
        Some(KeySource::File(file)) => {
            let bytes = Zeroizing::new(std::fs::read(&file.path).map_err(|e| KeyError::Unreadable {
                field,
                path: file.path.clone(),
                source: e,
            })?);
            Ok(Loaded { secrets: decode_payload(&bytes, role)?, origin: Origin::File(file.path.clone()) })
        }
        Some(KeySource::Kms(kms)) => {
            let blobs = read_text(Path::new(&kms.ciphertext_file), field)?;
            let secrets = kms::decrypt_data_keys(kms, &blobs, role).await?;
            Ok(Loaded { secrets, origin: Origin::Kms(kms.ciphertext_file.clone()) })
        }
        Some(KeySource::Gcp(gcp)) => {
            let payload = gcp::access_secret(gcp, field).await?;
            Ok(Loaded { secrets: decode_payload(&payload, role)?, origin: Origin::Gcp(gcp.secret_version.clone()) })
        }
    }
}

/// A cheap fingerprint of what a source would yield, so the reloader only decrypts
/// (calls KMS) when something changed. `None`: no cheap way to tell (ask again).
pub(crate) fn stamp(source: &KeySource, role: KeyRole) -> Option<[u8; 32]> {
    let bytes = match source {
        KeySource::File(f) => std::fs::read(&f.path).ok()?,
        KeySource::Kms(k) => std::fs::read(&k.ciphertext_file).ok()?,
        KeySource::Env(e) => std::env::var(e.var.as_deref().unwrap_or(role.default_var())).ok()?.into_bytes(),
        KeySource::Gcp(_) => return None,
    };
    Some(Sha256::digest(Zeroizing::new(bytes)).into())
}

fn read_text(path: &Path, field: &'static str) -> Result<Zeroizing<String>, KeyError> {
    std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| KeyError::Unreadable {
        field,
        path: path.display().to_string(),
        source: e,
    })
}

/// A file's or secret version's content: text (a keyring of hex or base64 lines), or one
/// secret as raw bytes, such as the 32 bytes of KMS GenerateDataKey's plaintext or of
/// `head -c 32 /dev/urandom` (which are valid UTF-8 now and then, hence the second try).
fn decode_payload(bytes: &[u8], role: KeyRole) -> Result<Vec<Secret>, KeyError> {
    match std::str::from_utf8(bytes).map(|text| decode_ring(text, role)) {
        Ok(Ok(secrets)) => Ok(secrets),
        Ok(Err(e)) if !(role == KeyRole::AuditKey && bytes.len() == 32) => Err(e),
        _ => Ok(vec![checked(bytes.to_vec(), role)?]),
    }
}

/// One secret per non-empty line (`#` starts a comment line); the first is primary.
/// A salt is one line.
fn decode_ring(text: &str, role: KeyRole) -> Result<Vec<Secret>, KeyError> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if lines.is_empty() {
        return Err(KeyError::Malformed { field: role.config_field(), reason: "the source holds no key" });
    }
    match role {
        KeyRole::AuditKey => lines.iter().map(|l| decode(l, role)).collect(),
        KeyRole::Salt => Ok(vec![decode(text.trim(), role)?]),
    }
}

/// Keys are written as 64 hex digits or standard base64; salts may also be any text
/// of at least 16 bytes (Vault secrets are often plain strings).
fn decode(text: &str, role: KeyRole) -> Result<Secret, KeyError> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        STANDARD.decode(text).ok()
    };
    match role {
        KeyRole::AuditKey => checked(bytes.unwrap_or_default(), role),
        KeyRole::Salt => checked(bytes.filter(|b| b.len() >= 16).unwrap_or_else(|| text.as_bytes().to_vec()), role),
    }
}

fn checked(bytes: Vec<u8>, role: KeyRole) -> Result<Secret, KeyError> {
    let field = role.config_field();
    match role {
        KeyRole::AuditKey if bytes.len() != 32 => Err(KeyError::Malformed {
            field,
            reason: "an AES-256 key must be 32 bytes: 64 hex digits or base64 per line, or exactly 32 raw bytes",
        }),
        KeyRole::Salt if bytes.len() < 16 => {
            Err(KeyError::Malformed { field, reason: "the salt must be at least 16 bytes" })
        }
        _ => Ok(Secret::new(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use godel_config::{EnvKeySource, FileKeySource};

    const HEX_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn hex_and_base64_keys_decode_to_the_same_bytes() {
        let b64 = STANDARD.encode(hex::decode(HEX_KEY).unwrap());
        assert_eq!(decode(HEX_KEY, KeyRole::AuditKey).unwrap(), decode(&b64, KeyRole::AuditKey).unwrap());
    }

    #[test]
    fn short_key_is_refused_without_echoing_it() {
        let err = decode("c2hvcnQ=", KeyRole::AuditKey).unwrap_err().to_string();
        assert!(err.contains("32 bytes") && !err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn a_keyring_file_lists_keys_primary_first() {
        let other = STANDARD.encode([7u8; 32]);
        let ring = decode_ring(&format!("# rotated 2026-11-26\n{other}\n\n{HEX_KEY}\n"), KeyRole::AuditKey).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring[0].expose(), &[7u8; 32]);
        assert!(decode_ring("\n# nothing\n", KeyRole::AuditKey).is_err());
    }

    #[tokio::test]
    async fn file_source_reads_and_trims() {
        let dir = std::env::temp_dir().join(format!("godel-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, format!("{HEX_KEY}\n")).unwrap();
        let source = KeySource::File(FileKeySource { path: path.display().to_string() });
        let loaded = load(Some(&source), KeyRole::AuditKey, true).await.unwrap();
        assert_eq!(loaded.secrets[0].expose()[1], 0x11);
        assert!(matches!(loaded.origin, Origin::File(_)));
        assert!(!format!("{:?}", loaded.secrets[0]).contains("17"), "Debug must not show bytes");
        assert!(stamp(&source, KeyRole::AuditKey).is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_file_of_32_raw_bytes_is_a_key_and_other_binaries_say_what_is_expected() {
        let dir = std::env::temp_dir().join(format!("godel-raw-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(0x80)).collect();
        let path = dir.join("raw");
        std::fs::write(&path, &raw).unwrap();
        let source = KeySource::File(FileKeySource { path: path.display().to_string() });
        let loaded = load(Some(&source), KeyRole::AuditKey, true).await.unwrap();
        assert_eq!(loaded.secrets[0].expose(), &raw[..]);
        std::fs::write(&path, &raw[..31]).unwrap();
        let err = load(Some(&source), KeyRole::AuditKey, true).await.err().unwrap().to_string();
        assert!(err.contains("exactly 32 raw bytes"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    #[allow(unsafe_code)] // set_var, below
    fn an_env_source_is_stamped_from_its_roles_variable() {
        let source = KeySource::Env(EnvKeySource { var: None });
        // SAFETY of the test: no other test in this binary reads GODEL_SALT.
        unsafe { std::env::set_var("GODEL_SALT", "stamp-test-salt-0123456789") };
        assert!(stamp(&source, KeyRole::Salt).is_some());
    }

    #[tokio::test]
    async fn missing_file_names_the_path_and_field() {
        let source = KeySource::File(FileKeySource { path: "/nonexistent/godel-key".into() });
        let err = load(Some(&source), KeyRole::AuditKey, false).await.err().unwrap().to_string();
        assert!(err.contains("audit.key") && err.contains("/nonexistent/godel-key"), "{err}");
    }

    #[tokio::test]
    async fn production_refuses_env_and_ephemeral() {
        let env = KeySource::Env(EnvKeySource { var: None });
        assert!(matches!(load(Some(&env), KeyRole::AuditKey, true).await, Err(KeyError::EnvInProduction { .. })));
        assert!(matches!(load(None, KeyRole::Salt, true).await, Err(KeyError::MissingInProduction { .. })));
        let loaded = load(None, KeyRole::AuditKey, false).await.unwrap();
        assert_eq!((loaded.secrets[0].expose().len(), loaded.origin), (32, Origin::Ephemeral));
    }

    #[test]
    fn plain_text_salt_is_accepted_when_long_enough() {
        assert_eq!(decode("a plain vault salt value", KeyRole::Salt).unwrap().expose(), b"a plain vault salt value");
        assert!(decode("short", KeyRole::Salt).is_err());
    }
}
