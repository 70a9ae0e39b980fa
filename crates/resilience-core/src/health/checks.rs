//! Ready-made [`HealthCheck`]s for the binaries' dependencies: [`FnCheck`] wraps any async
//! closure, [`RedisPingCheck`] sends `PING`.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use tokio::time::Instant;

use super::BoxFuture;
use super::composite::{CheckOutcome, HealthCheck};
use crate::Result;

/// Default limit on one Redis `PING`.
pub const DEFAULT_REDIS_PING_TIMEOUT: Duration = Duration::from_millis(1000);

/// A check made of a name, a criticality and a closure returning the check's future.
///
/// The closure runs on every check; it captures what it needs by clone (an `Arc`, a pool).
pub struct FnCheck<F> {
    name: String,
    critical: bool,
    run: F,
}

impl<F, Fut> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = CheckOutcome> + Send + 'static,
{
    /// A check named `name` that runs `run`; `critical` decides whether its failure makes
    /// the process unhealthy or only degraded.
    pub fn new(name: impl Into<String>, critical: bool, run: F) -> Self {
        Self {
            name: name.into(),
            critical,
            run,
        }
    }
}

impl<F> std::fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCheck")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = CheckOutcome> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn critical(&self) -> bool {
        self.critical
    }

    fn check(&self) -> BoxFuture<'_, CheckOutcome> {
        Box::pin((self.run)())
    }
}

/// Sends `PING` to Redis: healthy on `PONG`, unhealthy with the error (or `timed out after
/// N ms`) otherwise.
///
/// Named `redis` and non-critical by default: losing Redis degrades the gateway, it never
/// stops traffic (the gateway keeps serving the instances it knew, from its static list and
/// its last registry snapshot). Each `PING` is bounded by its own timeout (default
/// [`DEFAULT_REDIS_PING_TIMEOUT`]), so it also answers quickly outside the composite checker.
pub struct RedisPingCheck {
    name: String,
    critical: bool,
    timeout: Duration,
    source: Source,
}

enum Source {
    /// The binary's own manager, which reconnects by itself.
    Manager(ConnectionManager),
    /// A connection opened on first use and reopened after any failure.
    Client {
        client: Box<redis::Client>,
        connection: Mutex<Option<MultiplexedConnection>>,
    },
}

impl std::fmt::Debug for RedisPingCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Manager(_) => "connection manager".to_owned(),
            Source::Client { client, .. } => client.get_connection_info().addr().to_string(),
        };
        f.debug_struct("RedisPingCheck")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .field("timeout", &self.timeout)
            .field("source", &source)
            .finish()
    }
}

impl RedisPingCheck {
    /// A check pinging through the binary's `manager`.
    pub fn new(manager: ConnectionManager) -> Self {
        Self::with_source(Source::Manager(manager))
    }

    /// A check pinging the Redis at `url`, connecting lazily (so it can be built while
    /// Redis is down). Fails with [`crate::Error::Redis`] only when `url` is malformed.
    pub fn from_url(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self::with_source(Source::Client {
            client: Box::new(client),
            connection: Mutex::new(None),
        }))
    }

    /// Renames the check (default `redis`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the check critical or not (default not critical).
    pub fn with_critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Sets the limit on one `PING` (default [`DEFAULT_REDIS_PING_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn with_source(source: Source) -> Self {
        Self {
            name: "redis".to_owned(),
            critical: false,
            timeout: DEFAULT_REDIS_PING_TIMEOUT,
            source,
        }
    }

    async fn run(&self) -> CheckOutcome {
        let started = Instant::now();
        let reply = tokio::time::timeout(self.timeout, self.ping()).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let outcome = match reply {
            Ok(Ok(reply)) if reply == "PONG" => CheckOutcome::healthy(),
            Ok(Ok(reply)) => CheckOutcome::unhealthy(format!("unexpected reply to PING: {reply}")),
            Ok(Err(error)) => CheckOutcome::unhealthy(error.to_string()),
            Err(_) => {
                CheckOutcome::unhealthy(format!("timed out after {} ms", self.timeout.as_millis()))
            }
        };
        if outcome.status != super::HealthStatus::Healthy {
            self.forget_connection();
        }
        outcome.with_details(serde_json::json!({ "latency_ms": latency_ms }))
    }

    async fn ping(&self) -> redis::RedisResult<String> {
        let ping = redis::cmd("PING");
        match &self.source {
            Source::Manager(manager) => {
                let mut manager = manager.clone();
                ping.query_async(&mut manager).await
            }
            Source::Client { client, connection } => {
                let cached = connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let mut conn = match cached {
                    Some(conn) => conn,
                    None => {
                        let conn = client.get_multiplexed_async_connection().await?;
                        *connection.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(conn.clone());
                        conn
                    }
                };
                ping.query_async(&mut conn).await
            }
        }
    }

    /// Drops a cached connection after a failure, so the next check reconnects instead of
    /// waiting on a dead socket.
    fn forget_connection(&self) {
        if let Source::Client { connection, .. } = &self.source {
            *connection.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

impl HealthCheck for RedisPingCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn critical(&self) -> bool {
        self.critical
    }

    fn check(&self) -> BoxFuture<'_, CheckOutcome> {
        Box::pin(self.run())
    }
}
