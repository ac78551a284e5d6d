//! Start-up and shutdown: build a guard from config and secrets, serve it through the
//! [`edge`], and once the edge has stopped (SIGTERM, drain, in-flight requests finished
//! or dropped at the shutdown timeout) flush the audit trail and exit before the pod's
//! grace period runs out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use godel_config::{GuardConfig, LimiterBackend};

use crate::audit::{AuditSink, AuditWriter, Keyring, SharedKeyring};
use crate::edge::{self, EdgeLimits, Stop};
use crate::engine::{Guard, GuardParts};
use crate::http::{self, AppState, BodyLimits, Upstream, UpstreamError};
use crate::keys::{self, KeyError, KeyRole, Origin, Secret};
use crate::limiter::{DebtPolicy, FailoverLimiter, Limiter, LimiterError, LocalLimiter, spawn_sweeper};
use crate::metrics::Metrics;
use crate::pseudonym::Pseudonymizer;
use godel_traps::{CheckError, TrapEngine};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("rate limiter: {0}")]
    Limiter(#[from] LimiterError),
    #[error(transparent)]
    Proxy(#[from] UpstreamError),
    #[error("cannot start the audit writer: {0}")]
    Audit(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// How to run, from flags and environment.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub production: bool,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Guards sharing the limits; the local fallback divides by it.
    pub fleet_size: u32,
    /// Time for a request head.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait idle for its next request.
    pub idle_timeout: Duration,
    /// Longest time a request body may take.
    pub body_timeout: Duration,
    /// Bytes per second a body must average after its first five seconds.
    pub min_body_rate: u64,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
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
    let context_traps = TrapEngine::for_answers(&config.traps).map_err(CheckError::from)?;
    let untrusted_traps = TrapEngine::for_untrusted(&config.traps).map_err(CheckError::from)?;
    let metrics = Arc::new(Metrics::new());
    let (keyring, salt) = load_keys(config, production, &metrics).await?;
    let tiers: Vec<String> = config.tiers.iter().map(|t| t.name.clone()).collect();
    metrics.prime(&tiers, (config.rate_limit.backend == LimiterBackend::Redis).then_some("redis"));
    let limiter = start_limiter(config, fleet_size, &metrics).await?;
    let (audit, audit_writer) = AuditSink::start(audit_out).map_err(StartupError::Audit)?;
    let guard = Guard::new(
        config,
        GuardParts {
            traps,
            context_traps,
            untrusted_traps,
            pseudonymizer: Pseudonymizer::new(&salt),
            keyring,
            limiter,
            metrics: metrics.clone(),
            audit,
        },
    );
    if guard.counts_tokens() {
        // Before the first request, which would otherwise wait for the tables.
        if let Err(e) = tokio::task::spawn_blocking(crate::tokens::warm).await {
            tracing::warn!(error = %e, "tokenizer tables not loaded ahead; the first metered request loads them");
        }
    }
    let upstream = config.proxy.clone().map(|proxy| Upstream::new(proxy, metrics.clone())).transpose()?;
    Ok(Built {
        state: Arc::new(AppState::new(guard, metrics, upstream)),
        body_limit: http::body_limit(config.traps.max_prompt_bytes),
        audit_writer,
    })
}

/// The audit keyring (reloaded in the background when it comes from a source that can
/// change) and the pseudonymization salt, each logged by where it came from.
async fn load_keys(
    config: &GuardConfig,
    production: bool,
    metrics: &Arc<Metrics>,
) -> Result<(SharedKeyring, Secret), StartupError> {
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
        let reloader = keys::Reloader { every, production, salt: salt.secrets[0].clone(), metrics: metrics.clone() };
        reloader.spawn(source.clone(), keyring.clone());
    }
    Ok((keyring, salt.secrets[0].clone()))
}

/// The rate limiter the policy asks for, with the sweeper of its in-memory buckets.
async fn start_limiter(
    config: &GuardConfig,
    fleet_size: u32,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Limiter>, StartupError> {
    let debt = DebtPolicy::from(&config.security_debt);
    Ok(match (&config.rate_limit.backend, &config.rate_limit.redis) {
        (LimiterBackend::Redis, Some(redis)) => {
            let failover =
                FailoverLimiter::start(redis, config.rate_limit.failure_mode, fleet_size, metrics.clone()).await?;
            spawn_sweeper(Arc::downgrade(&failover), FailoverLimiter::local, debt);
            failover
        }
        _ => {
            let local = Arc::new(LocalLimiter::new());
            spawn_sweeper(Arc::downgrade(&local), |l| l, debt);
            local
        }
    })
}

/// Builds the guard from its config and serves until `shutdown` resolves.
pub async fn run(
    options: Options,
    config: &GuardConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let Built { state, body_limit, audit_writer } =
        build(config, options.production, options.fleet_size, Box::new(std::io::stdout())).await?;
    let listener =
        edge::listen(options.listen).map_err(|source| StartupError::Listen { addr: options.listen, source })?;
    let local = listener.local_addr().map_err(StartupError::Serve)?;
    tracing::info!(addr = %local, production = options.production, "listening");

    let body =
        BodyLimits { timeout: options.body_timeout, min_rate: options.min_body_rate, ..BodyLimits::new(body_limit) };
    let app = http::router(state.clone(), body);
    let limits = EdgeLimits {
        header_timeout: options.header_timeout,
        idle_timeout: options.idle_timeout,
        max_connections: edge::connection_cap(options.max_connections),
    };
    let drain_state = state.clone();
    let stop = Stop {
        shutdown,
        on_drain: Box::new(move || drain_state.start_draining()),
        drain_delay: options.drain_delay,
        shutdown_timeout: options.shutdown_timeout,
    };
    edge::serve(listener, app, &limits, stop).await;
    state.guard.flush_limiter().await;
    // Every connection is gone, and with them the last handles on the audit queue: the
    // writer drains what was decided and stops.
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
