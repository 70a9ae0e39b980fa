//! The Redis registry backend.
//!
//! Layout (with an empty namespace prefix, as in production):
//!
//! - `service:<name>:<id>`: the instance as JSON, set with `PX <ttl>`; heartbeats `PEXPIRE` it.
//!   Operators can still run `redis-cli KEYS 'service:*'`; this code never does.
//! - `services:<name>`: a sorted set of instance ids scored by their expiry in Unix ms. `list`
//!   reads it, `MGET`s the entries, forgets members whose entry is gone and prunes by score.
//!
//! Writes are small Lua scripts so that the entry and its index member change together and
//! scores come from the Redis server's clock (`TIME`), the same clock that expires the keys:
//! registering processes with skewed clocks cannot make each other's entries vanish.
//!
//! The connection is a redis `ConnectionManager` created on first use, so constructing a
//! registry never touches the network and a Redis that starts later is picked up. Every
//! operation is bounded by an operation timeout; on a timeout or a broken connection the
//! manager is dropped and the next operation dials afresh.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, RedisResult, Script};

use super::{BoxFuture, Instance, InstanceSource, ServiceRegistry, ttl_millis};
use crate::clock::{SharedClock, SystemClock, unix_millis};
use crate::error::{Error, Result};

/// The default bound on each registry operation, connection included.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(1);

/// The environment variable holding the Redis URL; when unset there is no Redis at all.
pub const ENV_REDIS_URL: &str = "REDIS_URL";

/// `KEYS[1]` entry, `KEYS[2]` index; `ARGV` json, ttl ms, member.
const REGISTER_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[3])
return 1
";

/// `KEYS[1]` entry, `KEYS[2]` index; `ARGV` ttl ms, member. 1 if extended, 0 if gone.
const HEARTBEAT_LUA: &str = r"
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[1])), ARGV[2])
  return 1
end
redis.call('ZREM', KEYS[2], ARGV[2])
return 0
";

/// `KEYS[1]` index. Drops members whose score (expiry) has passed; returns the rest.
const MEMBERS_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// `KEYS[1]` index, `KEYS[2..]` entries; `ARGV` their members. Removes the members whose entry
/// does not exist at the time of the call, so a concurrent re-registration is never undone.
const FORGET_LUA: &str = r"
local removed = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return removed
";

/// The service registry in Redis; see the module documentation for the key layout.
pub struct RedisRegistry {
    client: Client,
    prefix: String,
    op_timeout: Duration,
    clock: SharedClock,
    connection: Mutex<Slot>,
    register: Script,
    heartbeat: Script,
    members: Script,
    forget: Script,
}

impl RedisRegistry {
    /// A registry on the Redis at `url` (e.g. `redis://127.0.0.1:6379`), without connecting.
    ///
    /// Defaults: empty key prefix, [`DEFAULT_OP_TIMEOUT`] (1 s), the system clock. The first
    /// operation connects, and must run inside a Tokio runtime. Fails with
    /// [`Error::InvalidConfig`] naming `REDIS_URL` when the URL is malformed (credentials in it
    /// are not echoed).
    pub fn new(url: &str) -> Result<Self> {
        let client = Client::open(url.trim()).map_err(|e| {
            Error::invalid_config(
                ENV_REDIS_URL,
                format!("`{}` is not a valid Redis URL: {e}", redact(url.trim())),
            )
        })?;
        Ok(Self {
            client,
            prefix: String::new(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            clock: SystemClock::shared(),
            connection: Mutex::new(Slot::default()),
            register: Script::new(REGISTER_LUA),
            heartbeat: Script::new(HEARTBEAT_LUA),
            members: Script::new(MEMBERS_LUA),
            forget: Script::new(FORGET_LUA),
        })
    }

    /// Puts every key under `prefix` (e.g. `test:1234:`); default empty, so production keys
    /// are exactly `service:<name>:<id>` and `services:<name>`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each operation, connecting included (default 1 s); past it the operation fails
    /// with [`Error::Timeout`]. A zero duration is raised to 1 ms.
    #[must_use]
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The clock that stamps `registered_at_ms` (default: the system clock). Expiry is
    /// measured by Redis itself.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The operation timeout in force.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// The key of one instance's entry: `<prefix>service:<service>:<id>`.
    pub fn entry_key(&self, service: &str, id: &str) -> String {
        format!("{}service:{service}:{id}", self.prefix)
    }

    /// The key of a service's index: `<prefix>services:<service>`.
    pub fn index_key(&self, service: &str) -> String {
        format!("{}services:{service}", self.prefix)
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        // One quick retry inside the manager; beyond that the caller's own cadence (heartbeat,
        // discovery refresh) is the retry loop, so a dead Redis is noticed within the timeout.
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(self.op_timeout)
    }

    fn manager(&self) -> Result<(u64, ConnectionManager)> {
        let mut slot = self.slot();
        if let Some(manager) = &slot.manager {
            return Ok((slot.generation, manager.clone()));
        }
        let manager =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.manager_config())?;
        slot.generation += 1;
        slot.manager = Some(manager.clone());
        Ok((slot.generation, manager))
    }

    /// Forgets the manager of `generation` (not a newer one) so the next call dials again.
    fn discard(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.generation == generation {
            slot.manager = None;
        }
    }

    /// The connection slot; it is always consistent, so a poisoned lock is still usable.
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` on a connection under the operation timeout.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, manager) = self.manager()?;
        match tokio::time::timeout(self.op_timeout, op(manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if connection_broken(&e) {
                    self.discard(generation);
                }
                Err(Error::Redis(e))
            }
            Err(_) => {
                self.discard(generation);
                Err(Error::Timeout {
                    what: format!("redis {what}"),
                    after_ms: u64::try_from(self.op_timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    async fn register_impl(&self, instance: &Instance, ttl: Duration) -> Result<()> {
        let ttl_ms = ttl_millis(ttl)?;
        let mut stored = instance.validated_for_registry()?;
        stored.registered_at_ms = unix_millis(self.clock.wall());
        let key = self.entry_key(&stored.service, &stored.id);
        let json = serde_json::to_string(&stored).map_err(|e| Error::MalformedEntry {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let index = self.index_key(&stored.service);
        self.run("register", |mut conn| async move {
            let mut call = self.register.key(&key);
            call.key(&index).arg(&json).arg(ttl_ms).arg(&stored.id);
            call.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
    }

    async fn heartbeat_impl(&self, service: &str, id: &str, ttl: Duration) -> Result<bool> {
        let ttl_ms = ttl_millis(ttl)?;
        let key = self.entry_key(service, id);
        let index = self.index_key(service);
        let extended = self
            .run("heartbeat", |mut conn| async move {
                let mut call = self.heartbeat.key(&key);
                call.key(&index).arg(ttl_ms).arg(id);
                call.invoke_async::<i64>(&mut conn).await
            })
            .await?;
        Ok(extended == 1)
    }

    async fn deregister_impl(&self, service: &str, id: &str) -> Result<()> {
        let key = self.entry_key(service, id);
        let index = self.index_key(service);
        self.run("deregister", |mut conn| async move {
            ::redis::pipe()
                .atomic()
                .del(&key)
                .ignore()
                .zrem(&index, id)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn list_impl(&self, service: &str) -> Result<Vec<Instance>> {
        let index = self.index_key(service);
        let (members, values) = self
            .run("list", |mut conn| async move {
                let members: Vec<String> = self.members.key(&index).invoke_async(&mut conn).await?;
                if members.is_empty() {
                    return Ok((members, Vec::new()));
                }
                let keys: Vec<String> =
                    members.iter().map(|m| self.entry_key(service, m)).collect();
                let values: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
                let missing: Vec<usize> = (0..members.len())
                    .filter(|&i| values.get(i).is_none_or(Option::is_none))
                    .collect();
                if !missing.is_empty() {
                    let mut call = self.forget.key(&index);
                    for &i in &missing {
                        call.key(&keys[i]).arg(&members[i]);
                    }
                    call.invoke_async::<i64>(&mut conn).await?;
                }
                Ok((members, values))
            })
            .await?;
        let mut instances: Vec<Instance> = members
            .into_iter()
            .zip(values)
            .filter_map(|(id, value)| self.decode(service, id, value?))
            .collect();
        // The index orders by expiry; callers get a stable order.
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(instances)
    }

    /// One listed entry; the key (service and member) is authoritative for identity. A
    /// malformed entry is skipped with a warning, so one bad writer cannot hide every instance.
    fn decode(&self, service: &str, id: String, raw: Vec<u8>) -> Option<Instance> {
        match serde_json::from_slice::<Instance>(&raw) {
            Ok(instance) => Some(Instance {
                id,
                service: service.to_owned(),
                source: InstanceSource::Registry,
                ..instance
            }),
            Err(e) => {
                let error = Error::MalformedEntry {
                    key: self.entry_key(service, &id),
                    reason: e.to_string(),
                };
                tracing::warn!(%error, "skipping registry entry");
                None
            }
        }
    }
}

/// The current connection manager, if any, and the generation that names it, so a failed
/// operation discards only the manager it used and never a newer one.
#[derive(Default)]
struct Slot {
    generation: u64,
    /// `None` until first use and after a failure.
    manager: Option<ConnectionManager>,
}

/// Whether the connection behind `error` is unusable and must be replaced.
fn connection_broken(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
}

/// `url` with any `user:password@` replaced by `***@`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRegistry")
            .field(
                "addr",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl ServiceRegistry for RedisRegistry {
    /// `SET <entry> <json> PX <ttl>` and the index member, atomically.
    fn register<'a>(&'a self, instance: &'a Instance, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.register_impl(instance, ttl))
    }

    /// `PEXPIRE` of the entry and its index score, atomically; `false` (and the member is
    /// dropped) when the entry is gone.
    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.heartbeat_impl(service, id, ttl))
    }

    /// Deletes the entry and its index member in one transaction.
    fn deregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.deregister_impl(service, id))
    }

    /// Reads the index, `MGET`s the entries and forgets members whose entry expired. Entries
    /// that fail to decode are skipped with a warning.
    fn list<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<Instance>>> {
        Box::pin(self.list_impl(service))
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
