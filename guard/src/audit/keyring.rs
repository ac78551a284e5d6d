//! Several audit keys at once: the first (primary) encrypts new audit ids, all of them
//! open old ones, so a rotation never orphans a line written before it.

use std::sync::{Arc, RwLock};

use super::cipher::{AuditCipher, AuditIdError};
use crate::keys::Secret;

pub struct Keyring {
    ciphers: Vec<AuditCipher>,
}

impl Keyring {
    /// `secrets[0]` is the primary key. An empty slice is a programming error: every key
    /// source yields at least one key or fails.
    pub fn new(secrets: &[Secret]) -> Self {
        assert!(!secrets.is_empty(), "a keyring needs at least one key");
        Self { ciphers: secrets.iter().map(AuditCipher::new).collect() }
    }

    pub fn primary_id(&self) -> &str {
        self.ciphers[0].key_id()
    }

    pub fn key_ids(&self) -> Vec<&str> {
        self.ciphers.iter().map(AuditCipher::key_id).collect()
    }

    pub fn seal(&self, user_id: &str) -> String {
        self.ciphers[0].seal(user_id)
    }

    /// Opens an audit id with whichever key made it.
    pub fn open(&self, audit_id: &str) -> Result<String, AuditIdError> {
        super::cipher::open(&self.ciphers, audit_id)
    }

    /// Whether `secret` is one of this ring's keys (the salt must not be).
    pub fn contains(&self, secret: &Secret) -> bool {
        let probe = AuditCipher::new(secret);
        self.ciphers.iter().any(|c| c.key_id() == probe.key_id())
    }
}

/// The guard's current keyring, swapped whole when a rotated key is picked up.
#[derive(Clone)]
pub struct SharedKeyring(Arc<RwLock<Arc<Keyring>>>);

impl SharedKeyring {
    pub fn new(ring: Keyring) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(ring))))
    }

    pub fn current(&self) -> Arc<Keyring> {
        // Poisoning needs a panic while holding the lock, and neither holder can panic;
        // the ring inside is immutable either way.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, ring: Keyring) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_seals_all_open() {
        let old = Keyring::new(&[Secret::new(vec![1; 32])]);
        let id_old = old.seal("u1");
        let rotated = Keyring::new(&[Secret::new(vec![2; 32]), Secret::new(vec![1; 32])]);
        let id_new = rotated.seal("u2");
        assert!(id_new.contains(rotated.primary_id()));
        assert_eq!(rotated.open(&id_old).unwrap(), "u1");
        assert_eq!(rotated.open(&id_new).unwrap(), "u2");
        assert!(old.open(&id_new).is_err());
        assert!(rotated.contains(&Secret::new(vec![1; 32])));
        assert!(!rotated.contains(&Secret::new(vec![3; 32])));
    }

    #[test]
    fn shared_ring_swaps_whole() {
        let shared = SharedKeyring::new(Keyring::new(&[Secret::new(vec![1; 32])]));
        let before = shared.current().primary_id().to_owned();
        shared.replace(Keyring::new(&[Secret::new(vec![2; 32])]));
        assert_ne!(shared.current().primary_id(), before);
    }
}
