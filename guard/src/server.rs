//! Start-up and shutdown: build a guard from config and secrets, serve it, and on
//! SIGTERM turn readiness off, keep serving through the drain delay (endpoints take a
//! moment to drop the pod), stop accepting, let in-flight requests finish, and exit
//! before the pod's grace period runs out.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use godel_crds::{GuardConfig, LimiterBackend};
use tokio::net::TcpListener;

use crate::audit::{AuditSink, AuditWriter, Keyring, SharedKeyring};
use crate::config::{self, ConfigError};
use crate::engine::{Guard, GuardParts};
use crate::http::{self, AppState, Upstream};
use crate::keys::{self, KeyError, KeyRole, Origin};
use crate::limiter::{FailoverLimiter, Limiter, LimiterError, LocalLimiter};
use crate::metrics::Metrics;
use crate::pseudonym::Pseudonymizer;
use godel_traps::CheckError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("rate limiter: {0}")]
    Limiter(#[from] LimiterError),
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("cannot start the audit writer: {0}")]
    Audit(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// How to run, from flags and environment.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub config: Option<PathBuf>,
    pub production: bool,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Guards sharing the limits; the local fallback divides by it.
    pub fleet_size: u32,
}

/// A guard ready to serve, and the audit writer to join once it has stopped.
pub struct Built {
    pub state: Arc<AppState>,
    pub body_limit: usize,
    pub audit_writer: AuditWriter,
}

/// Builds a guard; every configuration mistake surfaces here, before the port opens.
/// Audit lines go to `audit_out` (stdout in the binary, a buffer in tests).
pub async fn build(
    config: &GuardConfig,
    production: bool,
    fleet_size: u32,
    audit_out: Box<dyn std::io::Write + Send>,
) -> Result<Built, StartupError> {
    let traps = godel_traps::check(config)?;
    let key = keys::load(config.audit.key.as_ref(), KeyRole::AuditKey, production).await?;
    let salt = keys::load(config.audit.salt.as_ref(), KeyRole::Salt, production).await?;
    let keyring = Keyring::new(&key.secrets);
    if keyring.contains(&salt.secrets[0]) {
        return Err(KeyError::SaltIsKey.into());
    }
    let consequences = [
        ("audit key", &key.origin, "audit ids cannot be decrypted once this process exits"),
        ("pseudonymization salt", &salt.origin, "analytical ids change on every restart and differ between pods"),
    ];
    for (what, origin, consequence) in consequences {
        match origin {
            Origin::Ephemeral => tracing::warn!(
                "!!! {what}: none configured, using an EPHEMERAL random one: {consequence}. \
                 Development only: configure audit.key and audit.salt for real use !!!"
            ),
            Origin::Env(var) => tracing::warn!(%var, "{what} read from an environment variable: development only"),
            Origin::File(path) => tracing::info!(%path, "{what} loaded from a file"),
            Origin::Kms(path) => tracing::info!(%path, "{what} decrypted with AWS KMS"),
            Origin::Gcp(version) => tracing::info!(%version, "{what} read from Google Secret Manager"),
        }
    }
    if salt.origin == Origin::Ephemeral && config.rate_limit.backend == LimiterBackend::Redis {
        tracing::warn!(
            "!!! rateLimit.backend is redis but the salt is ephemeral: every pod has its own buckets in Redis, \
             so the fleet allows each user the limit once per pod. Set audit.salt to the same file on every pod !!!"
        );
    }
    tracing::info!(key_id = keyring.primary_id(), keys = keyring.key_ids().len(), "audit keyring ready");
    let keyring = SharedKeyring::new(keyring);
    if let Some(source) = &config.audit.key {
        let every = Duration::from_secs(config.audit.reload_seconds.max(1));
        keys::spawn_reloader(source.clone(), every, keyring.clone(), production, salt.secrets[0].clone());
    }

    let metrics = Arc::new(Metrics::new());
    let tiers: Vec<String> = config.tiers.iter().map(|t| t.name.clone()).collect();
    metrics.prime(&tiers, (config.rate_limit.backend == LimiterBackend::Redis).then_some("redis"));
    let limiter: Arc<dyn Limiter> = match (&config.rate_limit.backend, &config.rate_limit.redis) {
        (LimiterBackend::Redis, Some(redis)) => {
            FailoverLimiter::start(redis, config.rate_limit.failure_mode, fleet_size, metrics.clone()).await?
        }
        _ => Arc::new(LocalLimiter::new()),
    };
    let (audit, audit_writer) = AuditSink::start(audit_out).map_err(StartupError::Audit)?;
    let guard = Guard::new(
        config,
        GuardParts {
            traps,
            pseudonymizer: Pseudonymizer::new(&salt.secrets[0]),
            keyring,
            limiter,
            metrics: metrics.clone(),
            audit,
        },
    );
    let upstream =
        config.proxy.clone().map(Upstream::new).transpose().map_err(|e| StartupError::Proxy(e.to_string()))?;
    Ok(Built {
        state: Arc::new(AppState::new(guard, metrics, upstream)),
        body_limit: http::body_limit(config.traps.max_prompt_bytes),
        audit_writer,
    })
}

/// Loads the config, builds the guard and serves until `shutdown` resolves.
pub async fn run(options: Options, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartupError> {
    let config = config::load(options.config.as_deref())?;
    let Built { state, body_limit, audit_writer } =
        build(&config, options.production, options.fleet_size, Box::new(std::io::stdout())).await?;
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| StartupError::Listen { addr: options.listen, reason: e.to_string() })?;
    let local = listener.local_addr().map_err(StartupError::Serve)?;
    tracing::info!(addr = %local, production = options.production, "listening");

    let app = http::router(state.clone(), body_limit);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_state = state.clone();
    let drain_delay = options.drain_delay;
    let graceful = async move {
        shutdown.await;
        drain_state.start_draining();
        tracing::info!(delay_ms = drain_delay.as_millis() as u64, "shutdown signal: readiness off, draining");
        tokio::time::sleep(drain_delay).await;
        tracing::info!("no longer accepting connections; finishing in-flight requests");
        let _ = stop_tx.send(());
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let deadline = async move {
        if stop_rx.await.is_ok() {
            tokio::time::sleep(options.shutdown_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.map_err(StartupError::Serve)?,
        () = deadline => tracing::warn!("in-flight requests did not finish in time; exiting anyway"),
    }
    drop(state);
    audit_writer.join();
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// What `check-config` runs: every start-up check that does not need secrets.
pub fn build_check(config: &GuardConfig) -> Result<(), StartupError> {
    godel_traps::check(config)?;
    Ok(())
}
