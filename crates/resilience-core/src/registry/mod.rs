//! The service registry: where running instances announce themselves and where the gateway
//! finds them.
//!
//! [`ServiceRegistry`] is a small, dyn-compatible trait (used as `Arc<dyn ServiceRegistry>`)
//! with three backends:
//!
//! - [`RedisRegistry`] (`redis.rs`): the production backend. One key per instance,
//!   `service:<name>:<id>`, with a millisecond TTL that heartbeats refresh, plus a sorted-set
//!   index `services:<name>` so listing never needs `KEYS` or `SCAN`. Every call is bounded by
//!   an operation timeout, so a dead Redis costs a caller at most that long.
//! - [`StaticRegistry`] (`static_list.rs`): the read-only list from `LLM_SERVICE_URLS`.
//! - [`MemoryRegistry`] (`memory.rs`): in-process, with TTLs measured on an injected clock;
//!   for tests and single-process setups.
//!
//! [`Registration`] (`heartbeat.rs`) is the owner side: a task that registers an instance,
//! heartbeats it, re-registers it when its entry expired and deregisters it on shutdown.
//! Entries are [`Instance`]s (`instance.rs`), compared by their normalized base URL.
//!
//! Why TTL + heartbeat rather than explicit deregistration only: a process that is killed
//! never deregisters, and its entry must still disappear within one TTL.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::{Error, Result};

mod heartbeat;
mod instance;
mod memory;
mod redis;
mod static_list;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use self::heartbeat::{FIRST_RETRY_DELAY, Registration, RegistrationStatus};
pub use self::instance::{DEFAULT_TIER, Instance, InstanceSource, normalize_base_url};
pub use self::memory::MemoryRegistry;
pub use self::redis::{DEFAULT_OP_TIMEOUT, ENV_REDIS_URL, RedisRegistry};
pub use self::static_list::{ENV_LLM_SERVICE_URLS, StaticRegistry};

/// The service name the llm-service instances register under.
pub const LLM_SERVICE: &str = "llm-service";

/// A boxed, `Send` future; the return type of the dyn-compatible async traits of this crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A place where instances register with a TTL and are listed per service.
///
/// Every method may be called concurrently. Implementations bound their own network calls, so
/// no method waits forever; failures are [`Error`]s classified as upstream faults (retryable
/// when the backend was unreachable), except misuse of a read-only backend, which is
/// [`Error::Unsupported`].
pub trait ServiceRegistry: Send + Sync + Debug {
    /// Stores (or replaces) `instance`'s entry, alive for `ttl` unless heartbeated.
    ///
    /// The stored copy has a normalized URL, `source: Registry` and `registered_at_ms` set to
    /// now. Fails with [`Error::InvalidConfig`] for an empty service or id, a bad URL or a TTL
    /// under 1 ms.
    fn register<'a>(&'a self, instance: &'a Instance, ttl: Duration) -> BoxFuture<'a, Result<()>>;

    /// Extends the entry of `service`/`id` to live `ttl` from now.
    ///
    /// Returns `Ok(false)` when the entry had already expired or never existed: the owner must
    /// then [`register`](Self::register) again.
    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Removes the entry of `service`/`id`; succeeds when it was already gone.
    fn deregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The live instances of `service`, sorted by id; empty when there are none.
    fn list<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<Instance>>>;

    /// A short name of the backend for health output and logs: `redis`, `static`, `memory`.
    fn backend(&self) -> &'static str;
}

/// The TTL in whole milliseconds; fails for TTLs under 1 ms, which Redis would reject.
pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64> {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(Error::invalid_config(
            "registry ttl",
            format!("{ttl:?} is shorter than 1 ms"),
        ));
    }
    if ttl > MAX_TTL {
        return Err(Error::invalid_config(
            "registry ttl",
            format!("{ttl:?} is longer than {MAX_TTL:?}: a dead instance would linger"),
        ));
    }
    Ok(ms)
}

/// The longest registry TTL accepted: a day. Heartbeats run far more often than that, and
/// the bound keeps `now + ttl` far from overflowing.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
