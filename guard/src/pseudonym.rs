//! The only place a raw user id is read: it goes in, a keyed hash comes out. The hash
//! is stable (same user, same id, so statistics and rate limits work) and useless
//! without the salt (no dictionary of known ids can reverse it).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::keys::Secret;

pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl Pseudonymizer {
    pub fn new(salt: &Secret) -> Self {
        Self {
            // HMAC accepts keys of any length, so this cannot fail.
            mac: Hmac::new_from_slice(salt.expose()).expect("HMAC takes keys of any length"),
        }
    }

    /// `hex(HMAC-SHA256(salt, user_id))`.
    pub fn analytical_id(&self, user_id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(user_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        let p = Pseudonymizer::new(&Secret::new(b"Jefe".to_vec()));
        assert_eq!(
            p.analytical_id("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn different_salts_give_unlinkable_ids() {
        let a = Pseudonymizer::new(&Secret::new(vec![1; 32]));
        let b = Pseudonymizer::new(&Secret::new(vec![2; 32]));
        assert_eq!(a.analytical_id("alice"), a.analytical_id("alice"));
        assert_ne!(a.analytical_id("alice"), b.analytical_id("alice"));
        assert_ne!(a.analytical_id("alice"), a.analytical_id("bob"));
    }
}
