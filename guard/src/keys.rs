//! Loading the two secrets the guard holds: the audit key (AES-256-GCM, encrypts user
//! ids into audit ids) and the pseudonymization salt (HMAC key behind analytical ids).
//! Secret bytes live in zeroized buffers and never reach a log or an error message.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use godel_crds::KeySource;
use zeroize::Zeroizing;

/// Secret bytes; `Debug` prints a placeholder so a stray `{:?}` cannot leak them.
#[derive(Clone)]
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
pub enum KeyRole {
    AuditKey,
    Salt,
}

impl KeyRole {
    fn config_field(self) -> &'static str {
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
         {{file: {{path: ...}}}} (a Vault Agent–injected file or a mounted Secret)"
    )]
    MissingInProduction { field: &'static str },
    #[error("{field} comes from the environment variable {var}, which production mode refuses: use a file source")]
    EnvInProduction { field: &'static str, var: String },
    #[error("{field}: environment variable {var} is not set")]
    EnvMissing { field: &'static str, var: String },
    #[error("{field}: cannot read {path}: {reason}")]
    Unreadable { field: &'static str, path: String, reason: String },
    #[error("{field}: {reason}")]
    Malformed { field: &'static str, reason: &'static str },
}

/// Where a loaded secret came from, for the start-up log (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Env(String),
    Ephemeral,
}

/// Loads one secret. `None` means "not configured": an ephemeral random secret,
/// refused in production mode.
pub fn load(source: Option<&KeySource>, role: KeyRole, production: bool) -> Result<(Secret, Origin), KeyError> {
    let field = role.config_field();
    let (text, origin) = match source {
        None if production => return Err(KeyError::MissingInProduction { field }),
        None => {
            let len = match role {
                KeyRole::AuditKey => 32,
                KeyRole::Salt => 32,
            };
            return Ok((Secret::random(len), Origin::Ephemeral));
        }
        Some(KeySource::Env(env)) => {
            let var = env.var.clone().unwrap_or_else(|| role.default_var().to_owned());
            if production {
                return Err(KeyError::EnvInProduction { field, var });
            }
            let value = std::env::var(&var).map_err(|_| KeyError::EnvMissing { field, var: var.clone() })?;
            (Zeroizing::new(value), Origin::Env(var))
        }
        Some(KeySource::File(file)) => (read_file(Path::new(&file.path), field)?, Origin::File(file.path.clone())),
    };
    Ok((decode(text.trim(), role)?, origin))
}

fn read_file(path: &Path, field: &'static str) -> Result<Zeroizing<String>, KeyError> {
    std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| KeyError::Unreadable {
        field,
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

/// Keys are written as 64 hex digits or standard base64; salts may also be any text
/// of at least 16 bytes (Vault secrets are often plain strings).
fn decode(text: &str, role: KeyRole) -> Result<Secret, KeyError> {
    let field = role.config_field();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        STANDARD.decode(text).ok()
    };
    match role {
        KeyRole::AuditKey => match bytes {
            Some(b) if b.len() == 32 => Ok(Secret::new(b)),
            _ => Err(KeyError::Malformed {
                field,
                reason: "an AES-256 key must be 32 bytes written as 64 hex digits or base64",
            }),
        },
        KeyRole::Salt => {
            let bytes = bytes.filter(|b| b.len() >= 16).unwrap_or_else(|| text.as_bytes().to_vec());
            if bytes.len() < 16 {
                return Err(KeyError::Malformed { field, reason: "the salt must be at least 16 bytes" });
            }
            Ok(Secret::new(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use godel_crds::{EnvKeySource, FileKeySource};

    #[test]
    fn hex_and_base64_keys_decode_to_the_same_bytes() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let b64 = STANDARD.encode(hex::decode(hex_key).unwrap());
        assert_eq!(
            decode(hex_key, KeyRole::AuditKey).unwrap().expose(),
            decode(&b64, KeyRole::AuditKey).unwrap().expose()
        );
    }

    #[test]
    fn short_key_is_refused_without_echoing_it() {
        let err = decode("c2hvcnQ=", KeyRole::AuditKey).unwrap_err().to_string();
        assert!(err.contains("32 bytes") && !err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn file_source_reads_and_trims() {
        let dir = std::env::temp_dir().join(format!("godel-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n").unwrap();
        let source = KeySource::File(FileKeySource { path: path.display().to_string() });
        let (secret, origin) = load(Some(&source), KeyRole::AuditKey, true).unwrap();
        assert_eq!(secret.expose()[1], 0x11);
        assert!(matches!(origin, Origin::File(_)));
        assert!(!format!("{secret:?}").contains("17"), "Debug must not show bytes");
    }

    #[test]
    fn missing_file_names_the_path_and_field() {
        let source = KeySource::File(FileKeySource { path: "/nonexistent/godel-key".into() });
        let err = load(Some(&source), KeyRole::AuditKey, false).unwrap_err().to_string();
        assert!(err.contains("audit.key") && err.contains("/nonexistent/godel-key"), "{err}");
    }

    #[test]
    fn production_refuses_env_and_ephemeral() {
        let env = KeySource::Env(EnvKeySource { var: None });
        assert!(matches!(load(Some(&env), KeyRole::AuditKey, true), Err(KeyError::EnvInProduction { .. })));
        assert!(matches!(load(None, KeyRole::Salt, true), Err(KeyError::MissingInProduction { .. })));
        let (secret, origin) = load(None, KeyRole::AuditKey, false).unwrap();
        assert_eq!((secret.expose().len(), origin), (32, Origin::Ephemeral));
    }

    #[test]
    fn plain_text_salt_is_accepted_when_long_enough() {
        assert_eq!(decode("a plain vault salt value", KeyRole::Salt).unwrap().expose(), b"a plain vault salt value");
        assert!(decode("short", KeyRole::Salt).is_err());
    }
}
