//! An in-process registry whose TTLs run on an injected [`Clock`](crate::Clock).
//!
//! It behaves like the Redis backend (entries expire unless heartbeated, a heartbeat on an
//! expired entry answers `false`), so code written against [`ServiceRegistry`] is tested with
//! a `ManualClock` and no sleeping, and a single process can run without Redis.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{BoxFuture, Instance, ServiceRegistry, ttl_millis};
use crate::clock::{SharedClock, SystemClock, unix_millis};
use crate::error::Result;

/// Registry entries kept in memory, expiring against the injected clock.
#[derive(Debug)]
pub struct MemoryRegistry {
    clock: SharedClock,
    /// Keyed by (service, id) so `list` comes out sorted by id.
    entries: Mutex<BTreeMap<(String, String), Entry>>,
}

#[derive(Debug)]
struct Entry {
    instance: Instance,
    expires_at: Instant,
}

impl MemoryRegistry {
    /// An empty registry measuring TTLs on `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// An empty registry on the system clock.
    pub fn with_system_clock() -> Self {
        Self::new(SystemClock::shared())
    }

    /// How many entries are alive now, across services.
    pub fn live_count(&self) -> usize {
        let now = self.clock.now();
        self.lock().values().filter(|e| e.expires_at > now).count()
    }

    /// The entry table; a panic elsewhere while holding the lock cannot leave it half-written
    /// (every update is a single insert or remove), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register_now(&self, instance: &Instance, ttl: Duration) -> Result<()> {
        ttl_millis(ttl)?;
        let mut stored = instance.validated_for_registry()?;
        stored.registered_at_ms = unix_millis(self.clock.wall());
        let key = (stored.service.clone(), stored.id.clone());
        let expires_at = self.clock.now() + ttl;
        self.lock().insert(
            key,
            Entry {
                instance: stored,
                expires_at,
            },
        );
        Ok(())
    }

    fn heartbeat_now(&self, service: &str, id: &str, ttl: Duration) -> Result<bool> {
        ttl_millis(ttl)?;
        let now = self.clock.now();
        let key = (service.to_owned(), id.to_owned());
        let mut entries = self.lock();
        match entries.get_mut(&key) {
            Some(entry) if entry.expires_at > now => {
                entry.expires_at = now + ttl;
                Ok(true)
            }
            Some(_) => {
                entries.remove(&key);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    fn list_now(&self, service: &str) -> Vec<Instance> {
        let now = self.clock.now();
        let mut entries = self.lock();
        entries.retain(|_, e| e.expires_at > now);
        entries
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, e)| e.instance.clone())
            .collect()
    }
}

impl Default for MemoryRegistry {
    /// An empty registry on the system clock.
    fn default() -> Self {
        Self::with_system_clock()
    }
}

impl ServiceRegistry for MemoryRegistry {
    fn register<'a>(&'a self, instance: &'a Instance, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.register_now(instance, ttl) })
    }

    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.heartbeat_now(service, id, ttl) })
    }

    fn deregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.lock().remove(&(service.to_owned(), id.to_owned()));
            Ok(())
        })
    }

    fn list<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<Instance>>> {
        Box::pin(async move { Ok(self.list_now(service)) })
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
