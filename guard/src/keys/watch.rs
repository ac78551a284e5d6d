//! Picks up a rotated audit key without a restart: Vault Agent rewrites its file, a
//! Secret update reaches the mounted file, a new Secret Manager version appears. The
//! source is read again every `reloadSeconds`; a source that fails to load keeps the
//! current keys (and says so, in the log and in `godel_key_reloads_total`), so a botched
//! rotation never stops the audit trail.

use std::sync::Arc;
use std::time::Duration;

use godel_config::KeySource;

use super::{KeyError, KeyRole, Secret, load, stamp};
use crate::audit::{Keyring, SharedKeyring};
use crate::metrics::{KEY_RELOAD_OUTCOMES, KeyReloadLabels, Metrics};

/// How the audit key's source is watched.
pub(crate) struct Reloader {
    pub every: Duration,
    pub production: bool,
    /// The running salt: a rotated keyring holding it is refused, as at start-up.
    pub salt: Secret,
    pub metrics: Arc<Metrics>,
}

impl Reloader {
    /// Watches `source` from a task of its own, replacing `keyring` when its keys change.
    pub(crate) fn spawn(self, source: KeySource, keyring: SharedKeyring) {
        for outcome in KEY_RELOAD_OUTCOMES {
            self.metrics.key_reloads.get_or_create(&KeyReloadLabels { outcome }).inc_by(0);
        }
        tokio::spawn(async move {
            let mut last = stamp(&source, KeyRole::AuditKey);
            loop {
                tokio::time::sleep(self.every).await;
                let now = stamp(&source, KeyRole::AuditKey);
                if now.is_some() && now == last {
                    continue;
                }
                match load(Some(&source), KeyRole::AuditKey, self.production).await {
                    Ok(loaded) if loaded.secrets.contains(&self.salt) => {
                        last = now;
                        self.count("refused");
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
                            self.count("rotated");
                        }
                    }
                    Err(e) => {
                        self.count("failed");
                        tracing::error!(error = %e, "audit key source failed to reload; keeping the current keys");
                    }
                }
            }
        });
    }

    fn count(&self, outcome: &'static str) {
        self.metrics.key_reloads.get_or_create(&KeyReloadLabels { outcome }).inc();
    }
}
