//! The shared backend: the token-bucket script of `bucket.lua` on Redis (standalone,
//! Sentinel or Cluster). Calls use EVALSHA and reload the script after NOSCRIPT (a
//! failover or `SCRIPT FLUSH`), and every call has a deadline.

use std::time::Duration;

use godel_config::{RedisConfig, RedisMode};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{RedisFuture, Script, ScriptInvocation};
use tokio::sync::{Mutex, RwLock};

use super::{Admission, BucketLimit, DebtPolicy, LimiterError};

/// Prefix of every key the guard writes.
pub const KEY_PREFIX: &str = "godel:rl:";

/// The Redis key of one bucket: the hash tag keeps each user's script on one slot.
pub fn bucket_key(bucket: &str) -> String {
    format!("{KEY_PREFIX}{{{bucket}}}")
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
    Sentinel(Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

pub struct RedisBackend {
    target: Target,
    conn: RwLock<Option<Conn>>,
    script: Script,
    timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> LimiterError {
    LimiterError::Unavailable(e.to_string())
}

impl RedisBackend {
    /// Checks the configuration; connecting happens in [`RedisBackend::connect`].
    pub fn new(config: &RedisConfig) -> Result<Self, LimiterError> {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let nodes: Vec<&str> =
            std::iter::once(config.url.as_str()).chain(config.nodes.iter().map(String::as_str)).collect();
        let target = match config.mode {
            RedisMode::Standalone => Target::Standalone(redis::Client::open(config.url.as_str()).map_err(unavailable)?),
            RedisMode::Cluster => Target::Cluster(
                ClusterClient::builder(nodes)
                    .connection_timeout(timeout.max(Duration::from_millis(500)))
                    .response_timeout(timeout)
                    .retries(1)
                    .build()
                    .map_err(unavailable)?,
            ),
            RedisMode::Sentinel => {
                let master = config
                    .master_name
                    .clone()
                    .ok_or_else(|| unavailable("sentinel mode needs rateLimit.redis.masterName"))?;
                Target::Sentinel(Mutex::new(
                    SentinelClient::build(nodes, master, None, SentinelServerType::Master).map_err(unavailable)?,
                ))
            }
        };
        Ok(Self { target, conn: RwLock::new(None), script: Script::new(include_str!("bucket.lua")), timeout })
    }

    /// Opens (or re-resolves, for Sentinel) the connection. Safe to call repeatedly.
    pub async fn connect(&self) -> Result<(), LimiterError> {
        let connect_timeout = self.timeout.max(Duration::from_millis(500));
        let conn = match &self.target {
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
                let mut client = client.lock().await;
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
        if result.is_err() && matches!(self.target, Target::Sentinel(_)) {
            *self.conn.write().await = None;
        }
        result
    }

    async fn invoke<T: redis::FromRedisValue>(&self, invocation: ScriptInvocation<'_>) -> Result<T, LimiterError> {
        self.with_conn(self.timeout, |mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    pub async fn admit(&self, bucket: &str, limit: BucketLimit, debt: DebtPolicy) -> Result<Admission, LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(bucket_key(bucket))
            .arg("admit")
            .arg(limit.rate_per_second)
            .arg(limit.burst)
            .arg(debt.half_life_seconds)
            .arg(debt.quarantine_threshold)
            .arg(0);
        let (allowed, remaining, retry_after_ms, quarantined): (i64, i64, i64, i64) = self.invoke(invocation).await?;
        Ok(Admission {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            retry_after_ms: retry_after_ms.max(0) as u64,
            quarantined: quarantined == 1,
        })
    }

    pub async fn add_debt(&self, bucket: &str, points: f64, debt: DebtPolicy) -> Result<(), LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(bucket_key(bucket))
            .arg("debt")
            .arg(1)
            .arg(1)
            .arg(debt.half_life_seconds)
            .arg(debt.quarantine_threshold)
            .arg(points);
        let _: (i64, i64, i64, i64) = self.invoke(invocation).await?;
        Ok(())
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
