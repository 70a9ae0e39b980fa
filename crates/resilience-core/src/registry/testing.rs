//! Test doubles shared by the registry and discovery tests.
//!
//! [`TokioClock`] reads Tokio's (pausable) clock, so a [`MemoryRegistry`] expires entries in
//! step with `tokio::time::advance` in `start_paused` tests. [`FlakyRegistry`] wraps a memory
//! registry and can be told to fail or to hang, standing in for an unreachable Redis.

use std::future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{BoxFuture, Instance, MemoryRegistry, ServiceRegistry};
use crate::clock::{Clock, SharedClock};
use crate::error::{Error, Result};

/// A clock that follows `tokio::time`, paused or not.
#[derive(Debug)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
    origin_wall: SystemTime,
}

impl TokioClock {
    pub(crate) fn shared() -> SharedClock {
        Arc::new(Self {
            origin: tokio::time::Instant::now(),
            origin_wall: SystemTime::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall(&self) -> SystemTime {
        self.origin_wall + (tokio::time::Instant::now() - self.origin)
    }
}

/// How a [`FlakyRegistry`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Healthy,
    Failing,
    Hanging,
}

/// A memory registry that can be switched to failing or hanging.
#[derive(Debug)]
pub(crate) struct FlakyRegistry {
    pub(crate) inner: Arc<MemoryRegistry>,
    failing: AtomicBool,
    hanging: AtomicBool,
    pub(crate) calls: AtomicU64,
}

impl FlakyRegistry {
    pub(crate) fn new(inner: Arc<MemoryRegistry>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            failing: AtomicBool::new(false),
            hanging: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        })
    }

    pub(crate) fn set(&self, mode: Mode) {
        self.failing.store(mode == Mode::Failing, Ordering::SeqCst);
        self.hanging.store(mode == Mode::Hanging, Ordering::SeqCst);
    }

    /// `Some(outage)` when the call must not reach the inner registry.
    fn outage<T: Send + 'static>(&self) -> Option<BoxFuture<'static, Result<T>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hanging.load(Ordering::SeqCst) {
            return Some(Box::pin(future::pending()));
        }
        if self.failing.load(Ordering::SeqCst) {
            let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Some(Box::pin(async move { Err(Error::Redis(io.into())) }));
        }
        None
    }
}

impl ServiceRegistry for FlakyRegistry {
    fn register<'a>(&'a self, instance: &'a Instance, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        self.outage()
            .unwrap_or_else(|| self.inner.register(instance, ttl))
    }

    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        self.outage()
            .unwrap_or_else(|| self.inner.heartbeat(service, id, ttl))
    }

    fn deregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.outage()
            .unwrap_or_else(|| self.inner.deregister(service, id))
    }

    fn list<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<Instance>>> {
        self.outage().unwrap_or_else(|| self.inner.list(service))
    }

    fn backend(&self) -> &'static str {
        "flaky"
    }
}
