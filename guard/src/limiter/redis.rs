//! The shared backend: the token-bucket script of `bucket.lua` on Redis (standalone,
//! Sentinel or Cluster). Calls use EVALSHA and reload the script after NOSCRIPT (a
//! failover or `SCRIPT FLUSH`), and every call has a deadline.

use std::time::Duration;

use godel_config::{RedisConfig, RedisMode};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{IntoConnectionInfo, RedisFuture, Script, ScriptInvocation};
use tokio::sync::{Mutex, RwLock};

use super::access::Access;
use super::{Admission, BucketLimit, DebtPolicy, LimiterError, Throttle, Usage, UsageLimit};

/// Prefix of every key the guard writes.
pub const KEY_PREFIX: &str = "godel:rl:";

/// The Redis key of one bucket: the hash tag keeps each user's script on one slot.
pub fn bucket_key(bucket: &str) -> String {
    format!("{KEY_PREFIX}{{{bucket}}}")
}

/// The Redis key of a user's stream leases, in the bucket's hash slot.
fn streams_key(bucket: &str) -> String {
    format!("{}:streams", bucket_key(bucket))
}

/// The script's answer: allowed, whole requests left, retry after ms, why, lease
/// granted, debt.
type Reply = (i64, i64, i64, String, i64, i64);

/// What an admission asks of the script besides the decision, for a pod that leases.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ask {
    /// Debt points this pod found since its last call, added before deciding.
    pub debt: f64,
    /// Requests to lease beyond this one.
    pub want: u32,
    /// No lease takes more than the bucket's tokens divided by this.
    pub divisor: u32,
    /// An expired lease's unused requests, back into the bucket.
    pub given_back: u32,
}

impl Ask {
    /// A plain admission: no debt, no lease.
    pub const NONE: Self = Self { debt: 0.0, want: 0, divisor: 1, given_back: 0 };
}

/// The script's decision, the lease it granted with it and the user's debt after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Leased {
    pub admission: Admission,
    pub granted: u32,
    pub debt: f64,
}

#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    Sentinel(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// One connection type for scripts and commands, whichever deployment is behind it.
impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

enum Target {
    Standalone(redis::Client),
    Sentinel(SentinelClient),
    Cluster(ClusterClient),
}

/// The client connections are made from, and the credentials it was built with.
struct Dialer {
    target: Target,
    fingerprint: [u8; 32],
}

pub struct RedisBackend {
    config: RedisConfig,
    streams: Script,
    /// Rebuilt at a connect when the credential or certificate files changed.
    dialer: Mutex<Dialer>,
    conn: RwLock<Option<Conn>>,
    script: Script,
    timeout: Duration,
}

/// The client for `config`'s deployment, authenticating and encrypting with `access`.
fn target(config: &RedisConfig, access: &Access, timeout: Duration) -> Result<Target, LimiterError> {
    let nodes: Vec<&str> =
        std::iter::once(config.url.as_str()).chain(config.nodes.iter().map(String::as_str)).collect();
    Ok(match config.mode {
        RedisMode::Standalone => {
            let info = config.url.as_str().into_connection_info().map_err(unavailable)?;
            let settings = with_credentials(info.redis_settings().clone(), access);
            let info = info.set_redis_settings(settings);
            let client = match &access.tls {
                Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
                None => redis::Client::open(info),
            };
            Target::Standalone(client.map_err(unavailable)?)
        }
        RedisMode::Cluster => {
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(timeout.max(Duration::from_millis(500)))
                .response_timeout(timeout)
                .retries(1);
            if let Some(username) = &access.username {
                builder = builder.username(username);
            }
            if let Some(password) = &access.password {
                builder = builder.password(password.as_str());
            }
            if let Some(certs) = &access.tls {
                builder = builder.certs(certs.clone());
            }
            Target::Cluster(builder.build().map_err(unavailable)?)
        }
        RedisMode::Sentinel => {
            let master = config
                .master_name
                .clone()
                .ok_or_else(|| unavailable("sentinel mode needs rateLimit.redis.masterName"))?;
            let settings = with_credentials(redis::RedisConnectionInfo::default(), access);
            let master_info =
                redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(settings);
            Target::Sentinel(
                SentinelClient::build(nodes, master, Some(master_info), SentinelServerType::Master)
                    .map_err(unavailable)?,
            )
        }
    })
}

/// `settings` with the user and password of `access`, where it has them.
fn with_credentials(mut settings: redis::RedisConnectionInfo, access: &Access) -> redis::RedisConnectionInfo {
    if let Some(username) = &access.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &access.password {
        settings = settings.set_password(password.as_str());
    }
    settings
}

/// The script's meter arguments: their number, then field, cap, window and charge each.
fn with_meters(invocation: &mut ScriptInvocation<'_>, usage: UsageLimit, charge: Usage) {
    let meters: Vec<_> = usage.meters(charge).collect();
    invocation.arg(meters.len());
    for meter in meters {
        invocation.arg(meter.field).arg(meter.cap).arg(meter.window_seconds).arg(meter.charge);
    }
}

fn unavailable(e: impl std::fmt::Display) -> LimiterError {
    LimiterError::Unavailable(e.to_string())
}

impl RedisBackend {
    /// Checks the configuration and reads the credential files; connecting happens in
    /// [`RedisBackend::connect`].
    pub fn new(config: &RedisConfig) -> Result<Self, LimiterError> {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let access = Access::read(config)?;
        let dialer = Dialer { target: target(config, &access, timeout)?, fingerprint: access.fingerprint };
        Ok(Self {
            config: config.clone(),
            dialer: Mutex::new(dialer),
            conn: RwLock::new(None),
            script: Script::new(include_str!("bucket.lua")),
            streams: Script::new(include_str!("streams.lua")),
            timeout,
        })
    }

    /// Opens (or re-resolves, for Sentinel) the connection. Safe to call repeatedly.
    pub async fn connect(&self) -> Result<(), LimiterError> {
        let connect_timeout = self.timeout.max(Duration::from_millis(500));
        let mut dialer = self.dialer.lock().await;
        let access = Access::read(&self.config)?;
        if access.fingerprint != dialer.fingerprint {
            tracing::info!("Redis credentials or certificates changed: reconnecting with the new ones");
            *dialer = Dialer { target: target(&self.config, &access, self.timeout)?, fingerprint: access.fingerprint };
        }
        let conn = match &mut dialer.target {
            Target::Standalone(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
                Conn::Standalone(manager)
            }
            Target::Sentinel(client) => {
                let conn = tokio::time::timeout(connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| unavailable("sentinel: timed out resolving the master"))?
                    .map_err(unavailable)?;
                Conn::Sentinel(conn)
            }
            Target::Cluster(client) => {
                let conn = tokio::time::timeout(connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| unavailable("cluster: timed out connecting"))?
                    .map_err(unavailable)?;
                Conn::Cluster(conn)
            }
        };
        *self.conn.write().await = Some(conn);
        Ok(())
    }

    /// Runs `call` on the current connection within the deadline. A failure in Sentinel
    /// mode drops the connection: the master may have moved, and the next connect asks
    /// Sentinel again.
    async fn with_conn<T, F>(&self, deadline: Duration, call: impl FnOnce(Conn) -> F) -> Result<T, LimiterError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.conn.read().await.clone() else {
            return Err(unavailable("not connected"));
        };
        let result = match tokio::time::timeout(deadline, call(conn)).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable(format!("no answer within {} ms", deadline.as_millis()))),
        };
        if result.is_err() && (self.config.mode == RedisMode::Sentinel || self.credentials_changed()) {
            *self.conn.write().await = None;
        }
        result
    }

    async fn invoke<T: redis::FromRedisValue>(&self, invocation: ScriptInvocation<'_>) -> Result<T, LimiterError> {
        self.with_conn(self.timeout, |mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    pub async fn admit(
        &self,
        bucket: &str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
    ) -> Result<Admission, LimiterError> {
        Ok(self.admit_leasing(bucket, limit, usage, reserve, debt, Ask::NONE).await?.admission)
    }

    /// [`RedisBackend::admit`] that also adds the pod's pending debt, gives back an
    /// expired lease's unused requests and asks for a new lease, in the same script call.
    pub async fn admit_leasing(
        &self,
        bucket: &str,
        limit: BucketLimit,
        usage: UsageLimit,
        reserve: Usage,
        debt: DebtPolicy,
        ask: Ask,
    ) -> Result<Leased, LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(bucket_key(bucket))
            .arg("admit")
            .arg(limit.rate_per_second)
            .arg(limit.burst)
            .arg(debt.half_life_seconds)
            .arg(debt.quarantine_threshold)
            .arg(ask.debt)
            .arg(ask.want)
            .arg(ask.divisor)
            .arg(ask.given_back);
        with_meters(&mut invocation, usage, reserve);
        let (allowed, remaining, retry_after_ms, why, granted, debt): Reply = self.invoke(invocation).await?;
        let remaining = remaining.max(0) as u64;
        let retry_after_ms = retry_after_ms.max(0) as u64;
        let granted = u32::try_from(granted.max(0)).unwrap_or(u32::MAX);
        let admission = if allowed == 1 {
            Admission { refused: None, remaining, retry_after_ms: 0 }
        } else {
            let why = match why.as_str() {
                "quarantined" => Throttle::Quarantined,
                "rate_limited" => Throttle::RateLimited,
                meter => Throttle::of_meter(meter),
            };
            Admission::refused(why, retry_after_ms, remaining)
        };
        Ok(Leased { admission, granted, debt: debt.max(0) as f64 })
    }

    /// Adds debt points; returns the user's debt after them.
    pub async fn add_debt(&self, bucket: &str, points: f64, debt: DebtPolicy) -> Result<f64, LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(bucket_key(bucket))
            .arg("debt")
            .arg(1)
            .arg(1)
            .arg(debt.half_life_seconds)
            .arg(debt.quarantine_threshold)
            .arg(points)
            .arg(0)
            .arg(1)
            .arg(0)
            .arg(0);
        let (.., after): Reply = self.invoke(invocation).await?;
        Ok(after.max(0) as f64)
    }

    pub async fn settle(&self, bucket: &str, usage: UsageLimit, delta: Usage) -> Result<(), LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        // "settle" reads neither the bucket's, the debt's nor the lease's arguments.
        invocation.key(bucket_key(bucket)).arg("settle");
        for placeholder in [1, 1, 1, 1, 0, 0, 1, 0] {
            invocation.arg(placeholder);
        }
        with_meters(&mut invocation, usage, delta);
        let _: Reply = self.invoke(invocation).await?;
        Ok(())
    }

    pub async fn open_stream(&self, key: &str, lease: &str, cap: u32, ttl: Duration) -> Result<bool, LimiterError> {
        let mut invocation = self.streams.prepare_invoke();
        invocation.key(streams_key(key)).arg("open").arg(lease).arg(cap).arg(ttl.as_millis() as u64);
        let held: i64 = self.invoke(invocation).await?;
        Ok(held == 1)
    }

    pub async fn close_stream(&self, key: &str, lease: &str) -> Result<(), LimiterError> {
        let mut invocation = self.streams.prepare_invoke();
        invocation.key(streams_key(key)).arg("close").arg(lease).arg(0).arg(0);
        let _: i64 = self.invoke(invocation).await?;
        Ok(())
    }

    /// Whether the credential or certificate files now say something else than the
    /// connection was made with: after a rotation, a failing connection is dropped so the
    /// next connect uses the new ones. Files are read only after a failure.
    fn credentials_changed(&self) -> bool {
        if self.config.username_file.is_none() && self.config.password_file.is_none() && self.config.tls.is_none() {
            return false;
        }
        let Ok(dialer) = self.dialer.try_lock() else { return false };
        Access::read(&self.config).is_ok_and(|access| access.fingerprint != dialer.fingerprint)
    }

    /// A cheap round trip for the recovery probe; connects first when needed.
    pub async fn ping(&self) -> Result<(), LimiterError> {
        if self.conn.read().await.is_none() {
            self.connect().await?;
        }
        let deadline = self.timeout.max(Duration::from_millis(200));
        self.with_conn(deadline, |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }
}
