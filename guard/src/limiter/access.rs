//! How the guard reaches a production Redis: the ACL user and password from files (a
//! mounted Secret, a Vault Agent file) rather than the URL, and TLS with the service's
//! own CA and an optional client certificate. The files are read at every (re)connect,
//! so a rotated password is used once the old connection goes, without a restart.

use std::path::Path;

use godel_config::RedisConfig;
use redis::{ClientTlsConfig, TlsCertificates};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::LimiterError;

/// What a connection authenticates and encrypts with. No `Debug`: it holds the password.
pub(super) struct Access {
    pub(super) username: Option<String>,
    pub(super) password: Option<Zeroizing<String>>,
    pub(super) tls: Option<TlsCertificates>,
    /// A digest of all of it, to tell whether the files changed since the last connect.
    pub(super) fingerprint: [u8; 32],
}

impl Access {
    /// Reads every file the config names; an unreadable one is an error naming the field
    /// and the path, never the content.
    pub(super) fn read(config: &RedisConfig) -> Result<Self, LimiterError> {
        let mut digest = Sha256::new();
        // Each named file's bytes, added to the digest.
        let mut file = |field: &str, path: &Option<String>| -> Result<Option<Zeroizing<Vec<u8>>>, LimiterError> {
            let Some(path) = path else { return Ok(None) };
            let bytes = std::fs::read(Path::new(path))
                .map(Zeroizing::new)
                .map_err(|e| unreadable(field, path, &e.kind().to_string()))?;
            digest.update(&*bytes);
            digest.update([0]);
            Ok(Some(bytes))
        };
        let text =
            |field: &str, bytes: Option<Zeroizing<Vec<u8>>>| -> Result<Option<Zeroizing<String>>, LimiterError> {
                let Some(bytes) = bytes else { return Ok(None) };
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| LimiterError::Unavailable(format!("rateLimit.redis.{field}: not UTF-8")))?;
                Ok(Some(Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned())))
            };
        let username = text("usernameFile", file("usernameFile", &config.username_file)?)?.map(|u| u.to_string());
        let password = text("passwordFile", file("passwordFile", &config.password_file)?)?;
        let tls = match &config.tls {
            None => None,
            Some(tls) => {
                let mut pem =
                    |field: &str, path: &Option<String>| Ok::<_, LimiterError>(file(field, path)?.map(|b| b.to_vec()));
                let root_cert = pem("tls.caFile", &tls.ca_file)?;
                let client_tls = match (pem("tls.certFile", &tls.cert_file)?, pem("tls.keyFile", &tls.key_file)?) {
                    (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig { client_cert, client_key }),
                    _ => None,
                };
                Some(TlsCertificates { client_tls, root_cert })
            }
        };
        Ok(Self { username, password, tls, fingerprint: digest.finalize().into() })
    }
}

fn unreadable(field: &str, path: &str, why: &str) -> LimiterError {
    LimiterError::Unavailable(format!("rateLimit.redis.{field}: cannot read {path}: {why}"))
}
