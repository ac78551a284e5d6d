//! Audit ids: `v1.<key_id>.<base64url(nonce ‖ AES-256-GCM(user_id))>`, with a random
//! 96-bit nonce and the key id as associated data, so an id cannot be moved under
//! another key id and a key holder can tell which key opens it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::keys::Secret;

const NONCE_LEN: usize = 12;

/// One AES-256-GCM key with its public id.
pub(crate) struct AuditCipher {
    key_id: String,
    cipher: Aes256Gcm,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditIdError {
    #[error("not an audit id (expected v1.<key id>.<payload>)")]
    Malformed,
    #[error("audit id was made with key {0}, which is not in the keyring")]
    UnknownKey(String),
    #[error("audit id does not decrypt: tampered, truncated, or a different key with the same id")]
    Tampered,
}

impl AuditCipher {
    /// The key id is a fingerprint of the key, so a rotated key gets a new id without
    /// anyone having to name it, and the id reveals nothing about the key.
    pub(crate) fn new(key: &Secret) -> Self {
        let digest = Sha256::new().chain_update(b"godel-audit-key-id\0").chain_update(key.expose()).finalize();
        Self { key_id: hex::encode(&digest[..8]), cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose())) }
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn seal(&self, user_id: &str) -> String {
        // A 96-bit random nonce from the thread's ChaCha CSPRNG (seeded and reseeded from
        // the OS): no system call per request. Why this is safe: docs/SECURITY.md.
        let mut nonce = Nonce::default();
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload { msg: user_id.as_bytes(), aad: self.key_id.as_bytes() };
        // Encryption fails only for messages beyond GCM's 64 GiB limit; user ids are
        // capped far below that at the HTTP boundary.
        let ciphertext = self.cipher.encrypt(&nonce, payload).expect("user id within AES-GCM limits");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("v1.{}.{}", self.key_id, URL_SAFE_NO_PAD.encode(blob))
    }
}

/// Opens an audit id with whichever key of `keys` made it.
pub(super) fn open(keys: &[AuditCipher], audit_id: &str) -> Result<String, AuditIdError> {
    let mut parts = audit_id.splitn(3, '.');
    let (Some("v1"), Some(key_id), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuditIdError::Malformed);
    };
    let key = keys.iter().find(|k| k.key_id == key_id).ok_or_else(|| AuditIdError::UnknownKey(key_id.to_owned()))?;
    let blob = URL_SAFE_NO_PAD.decode(payload).map_err(|_| AuditIdError::Malformed)?;
    if blob.len() < NONCE_LEN + 16 {
        return Err(AuditIdError::Malformed);
    }
    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
    let plain = key
        .cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: key_id.as_bytes() })
        .map_err(|_| AuditIdError::Tampered)?;
    String::from_utf8(plain).map_err(|_| AuditIdError::Tampered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AuditCipher {
        AuditCipher::new(&Secret::new(vec![byte; 32]))
    }

    #[test]
    fn seal_then_open_round_trips_with_fresh_nonces() {
        let k = key(7);
        let a = k.seal("alice@example.com");
        let b = k.seal("alice@example.com");
        assert_ne!(a, b, "random nonces make equal ids unlinkable");
        assert!(a.starts_with(&format!("v1.{}.", k.key_id())));
        assert!(!a.contains("alice"));
        assert_eq!(open(&[k], &a).unwrap(), "alice@example.com");
    }

    #[test]
    fn rotation_keeps_old_ids_readable() {
        let (old, new) = (key(1), key(2));
        let old_id = old.seal("u1");
        let new_id = new.seal("u2");
        let ring = [new, old];
        assert_eq!(open(&ring, &old_id).unwrap(), "u1");
        assert_eq!(open(&ring, &new_id).unwrap(), "u2");
    }

    #[test]
    fn tampering_unknown_keys_and_garbage_are_clear_errors() {
        let k = key(3);
        let id = k.seal("bob");
        let (prefix, payload) = id.rsplit_once('.').unwrap();
        let mut blob = URL_SAFE_NO_PAD.decode(payload).unwrap();
        blob[NONCE_LEN] ^= 1;
        let tampered = format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(blob));
        assert_eq!(open(std::slice::from_ref(&k), &tampered), Err(AuditIdError::Tampered));
        assert!(matches!(open(&[key(4)], &id), Err(AuditIdError::UnknownKey(_))));
        assert_eq!(open(&[k], "hello"), Err(AuditIdError::Malformed));
    }

    #[test]
    fn moving_an_id_under_another_key_id_fails() {
        let (a, b) = (key(5), key(6));
        let id = a.seal("carol");
        let moved = id.replacen(a.key_id(), b.key_id(), 1);
        assert_eq!(open(&[a, b], &moved), Err(AuditIdError::Tampered));
    }
}
