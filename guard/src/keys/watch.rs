//! Picks up a rotated audit key without a restart: Vault Agent rewrites its file, a
//! Secret update reaches the mounted file, a new Secret Manager version appears. The
//! source is read again every `reloadSeconds`; a source that fails to load keeps the
//! current keys (and says so), so a botched rotation never stops the audit trail.

use std::time::Duration;

use godel_config::KeySource;

use super::{KeyError, KeyRole, Secret, load, stamp};
use crate::audit::{Keyring, SharedKeyring};

/// `salt` is the running salt: a rotated keyring holding it is refused, as at start-up.
pub(crate) fn spawn_reloader(
    source: KeySource,
    every: Duration,
    keyring: SharedKeyring,
    production: bool,
    salt: Secret,
) {
    tokio::spawn(async move {
        let mut last = stamp(&source, KeyRole::AuditKey);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&source, KeyRole::AuditKey);
            if now.is_some() && now == last {
                continue;
            }
            match load(Some(&source), KeyRole::AuditKey, production).await {
                Ok(loaded) if loaded.secrets.contains(&salt) => {
                    last = now;
                    tracing::error!(error = %KeyError::SaltIsKey, "rotated audit key refused; keeping the current keys");
                }
                Ok(loaded) => {
                    last = now;
                    let ring = Keyring::new(&loaded.secrets);
                    let current = keyring.current();
                    if ring.key_ids() != current.key_ids() {
                        tracing::info!(
                            from = current.primary_id(),
                            to = ring.primary_id(),
                            keys = ring.key_ids().len(),
                            "audit key rotated"
                        );
                        keyring.replace(ring);
                    }
                }
                Err(e) => tracing::error!(error = %e, "audit key source failed to reload; keeping the current keys"),
            }
        }
    });
}
