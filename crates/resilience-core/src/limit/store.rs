//! The rate limiter the gateway calls: which store decides, and what a store failure means.
//!
//! With one replica every check is decided in memory ([`RateLimiter::memory`]). With several,
//! Redis decides ([`RateLimiter::redis`]) so that all replicas enforce one limit; when Redis
//! fails, the [`FailureMode`] says what a check gets instead — each replica's share of the
//! limit in memory (the default), a refusal, or a pass — and the outage is logged once when
//! it starts and once when it ends, never per request. During an outage Redis is skipped for
//! a back-off period ([`StoreBackoff`]) so requests do not each wait for its timeout.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::backoff::StoreBackoff;
use super::error::LimitError;
use super::gcra::{Charge, Decision, Quota};
use super::local::LocalLimiter;
use super::redis::RedisLimiter;
use crate::Error;
use crate::clock::SharedClock;
use crate::registry::BoxFuture;

/// What a refusal under [`FailureMode::FailClosed`] tells the caller to wait.
pub const FAIL_CLOSED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a check gets while the shared store is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FailureMode {
    /// Decide in memory with this replica's share of the limit (`fail_local`, the default).
    #[default]
    FailLocal,
    /// Refuse every check (`fail_closed`).
    FailClosed,
    /// Allow every check (`fail_open`).
    FailOpen,
}

/// What [`FailureMode::on_store_unavailable`] decided for one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Check the local store against this quota (the replica's share).
    Local(Quota),
    /// Refuse.
    Refuse,
    /// Allow without counting.
    Allow,
}

/// Which store (or failure mode) produced a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The in-memory store of a single-replica deployment.
    Memory,
    /// The shared Redis store.
    Redis,
    /// The local store with this replica's share, Redis being unavailable (`fail_local`).
    Local,
    /// Allowed without counting, Redis being unavailable (`fail_open`).
    FailedOpen,
    /// Refused, Redis being unavailable (`fail_closed`).
    FailedClosed,
}

/// Which store a limiter was built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// In process only.
    Memory,
    /// Redis, with a failure mode.
    Redis,
}

/// A decision and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// What the caller is told.
    pub decision: Decision,
    /// Which store or failure mode decided.
    pub source: Source,
}

/// The limiter's state for `/health` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store configured.
    pub kind: StoreKind,
    /// Whether Redis is believed up (`false` for the memory store, which has none).
    pub redis_available: bool,
    /// What a check uses right now.
    pub active: Source,
    /// The failure mode, for the Redis store.
    pub failure_mode: Option<FailureMode>,
    /// New keys the local store refused because it was full, since start.
    pub local_overflows: u64,
}

/// The rate limiter: a store, and for Redis a failure mode; see the module documentation.
pub struct RateLimiter {
    local: LocalLimiter,
    shared: Option<Shared>,
}

/// The shared store and what tracks its availability.
struct Shared {
    store: Box<dyn SharedStore>,
    mode: FailureMode,
    replicas: u32,
    clock: SharedClock,
    /// Mirrors `backoff.is_available()`, so checks while Redis is up take no lock.
    available: AtomicBool,
    backoff: Mutex<StoreBackoff>,
}

/// A store shared by the replicas; [`RedisLimiter`] in production, a double in tests.
pub(crate) trait SharedStore: Send + Sync + 'static {
    /// As [`RedisLimiter::check`].
    fn check<'a>(
        &'a self,
        key: &'a str,
        quota: &'a Quota,
        cost: u32,
        mode: Charge,
    ) -> BoxFuture<'a, Result<Decision, LimitError>>;
}

impl SharedStore for RedisLimiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quota: &'a Quota,
        cost: u32,
        mode: Charge,
    ) -> BoxFuture<'a, Result<Decision, LimitError>> {
        Box::pin(RedisLimiter::check(self, key, quota, cost, mode))
    }
}

impl FailureMode {
    /// The name operators write: `fail_local`, `fail_closed` or `fail_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailLocal => "fail_local",
            Self::FailClosed => "fail_closed",
            Self::FailOpen => "fail_open",
        }
    }

    /// What a check of `quota` gets while the shared store is unavailable, on one of
    /// `replicas` replicas (0 counts as 1).
    pub fn on_store_unavailable(self, quota: &Quota, replicas: u32) -> Fallback {
        match self {
            Self::FailLocal => Fallback::Local(quota.share(replicas)),
            Self::FailClosed => Fallback::Refuse,
            Self::FailOpen => Fallback::Allow,
        }
    }

    /// The source of the decisions this mode produces.
    pub fn source(self) -> Source {
        match self {
            Self::FailLocal => Source::Local,
            Self::FailClosed => Source::FailedClosed,
            Self::FailOpen => Source::FailedOpen,
        }
    }
}

impl FromStr for FailureMode {
    type Err = Error;

    /// Parses `fail_local`, `fail_closed` or `fail_open` (case and surrounding spaces
    /// ignored); anything else is [`Error::InvalidConfig`] naming `rate_limit.failure_mode`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fail_local" => Ok(Self::FailLocal),
            "fail_closed" => Ok(Self::FailClosed),
            "fail_open" => Ok(Self::FailOpen),
            _ => Err(Error::invalid_config(
                "rate_limit.failure_mode",
                "expected fail_local, fail_closed or fail_open",
            )),
        }
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Source {
    /// The name `/health`, logs and metric labels use (while Redis is away, the failure
    /// mode's own name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Local => "fail_local",
            Self::FailedOpen => "fail_open",
            Self::FailedClosed => "fail_closed",
        }
    }
}

impl StoreKind {
    /// `memory` or `redis`, as `RATE_LIMIT_STORE` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// The key [`RateLimiter::probe`] peeks at (never written: a peek charges nothing).
const PROBE_KEY: &str = "probe";

impl RateLimiter {
    /// A limiter deciding everything in `local` (one replica).
    pub fn memory(local: LocalLimiter) -> Self {
        Self {
            local,
            shared: None,
        }
    }

    /// A limiter deciding in `redis`, and while Redis is unavailable as `mode` says, with
    /// `local` holding this one of `replicas` replicas' share (0 counts as 1). `clock` times
    /// the back-off between attempts to reach Redis again.
    pub fn redis(
        redis: RedisLimiter,
        local: LocalLimiter,
        mode: FailureMode,
        replicas: u32,
        clock: SharedClock,
    ) -> Self {
        Self::with_shared_store(Box::new(redis), local, mode, replicas, clock)
    }

    /// [`Self::redis`] on any shared store.
    pub(crate) fn with_shared_store(
        store: Box<dyn SharedStore>,
        local: LocalLimiter,
        mode: FailureMode,
        replicas: u32,
        clock: SharedClock,
    ) -> Self {
        Self {
            local,
            shared: Some(Shared {
                store,
                mode,
                replicas: replicas.max(1),
                clock,
                available: AtomicBool::new(true),
                backoff: Mutex::default(),
            }),
        }
    }

    /// Charges `cost` units of `quota` to `key` (see [`super::decide`]). Never fails: a
    /// Redis error or timeout is answered by the failure mode, and reported in the source
    /// (under `fail_local` the decision's `limit` is this replica's share).
    pub async fn check(&self, key: &str, quota: &Quota, cost: u32, mode: Charge) -> Checked {
        let Some(shared) = &self.shared else {
            return Checked {
                decision: self.local.check(key, quota, cost, mode),
                source: Source::Memory,
            };
        };
        if shared.begin() {
            match shared.store.check(key, quota, cost, mode).await {
                Ok(decision) => {
                    shared.succeeded();
                    return Checked {
                        decision,
                        source: Source::Redis,
                    };
                }
                Err(error) => shared.failed(&error),
            }
        }
        self.fall_back(shared, key, quota, cost, mode)
    }

    /// The limiter's state after trying an unavailable Redis again when its back-off
    /// allows (a peek that writes nothing): a health check calls this, so that a replica
    /// without traffic still notices Redis coming back.
    pub async fn probe(&self) -> StoreStatus {
        if let Some(shared) = &self.shared
            && !shared.available.load(Ordering::Acquire)
            && shared.begin()
        {
            let quota = Quota::per_minute(1, 1);
            if let Ok(quota) = quota {
                match shared
                    .store
                    .check(PROBE_KEY, &quota, 0, Charge::Admit)
                    .await
                {
                    Ok(_) => shared.succeeded(),
                    Err(error) => shared.failed(&error),
                }
            }
        }
        self.status()
    }

    /// The limiter's state now.
    pub fn status(&self) -> StoreStatus {
        let local_overflows = self.local.overflows();
        match &self.shared {
            None => StoreStatus {
                kind: StoreKind::Memory,
                redis_available: false,
                active: Source::Memory,
                failure_mode: None,
                local_overflows,
            },
            Some(shared) => {
                let up = shared.available.load(Ordering::Acquire);
                StoreStatus {
                    kind: StoreKind::Redis,
                    redis_available: up,
                    active: if up {
                        Source::Redis
                    } else {
                        shared.mode.source()
                    },
                    failure_mode: Some(shared.mode),
                    local_overflows,
                }
            }
        }
    }

    fn fall_back(
        &self,
        shared: &Shared,
        key: &str,
        quota: &Quota,
        cost: u32,
        mode: Charge,
    ) -> Checked {
        let decision = match shared.mode.on_store_unavailable(quota, shared.replicas) {
            Fallback::Local(share) => self.local.check(key, &share, cost, mode),
            Fallback::Refuse => Decision {
                allowed: false,
                limit: quota.limit(),
                remaining: 0,
                reset_after: FAIL_CLOSED_RETRY_AFTER,
                retry_after: Some(FAIL_CLOSED_RETRY_AFTER),
            },
            // Nothing is counted, so the whole allowance is reported.
            Fallback::Allow => Decision {
                allowed: true,
                limit: quota.limit(),
                remaining: quota.burst(),
                reset_after: Duration::ZERO,
                retry_after: None,
            },
        };
        Checked {
            decision,
            source: shared.mode.source(),
        }
    }
}

impl Shared {
    /// Whether this check goes to the shared store (lock-free while it is up).
    fn begin(&self) -> bool {
        if self.available.load(Ordering::Acquire) {
            return true;
        }
        let mut backoff = self.backoff();
        let now = self.clock.now();
        let go = backoff.should_try(now);
        if go {
            backoff.trying(now);
        }
        go
    }

    fn succeeded(&self) {
        if self.available.load(Ordering::Acquire) {
            return;
        }
        let mut backoff = self.backoff();
        if backoff.succeeded() {
            self.available.store(true, Ordering::Release);
            tracing::info!("rate-limit store (redis) is available again");
        }
    }

    fn failed(&self, error: &LimitError) {
        let mut backoff = self.backoff();
        if backoff.failed(self.clock.now()) {
            self.available.store(false, Ordering::Release);
            tracing::warn!(
                %error,
                failure_mode = self.mode.as_str(),
                "rate-limit store (redis) unavailable; applying the failure mode until it answers again"
            );
        }
    }

    /// The back-off is consistent after every call, so a poisoned lock is still usable.
    fn backoff(&self) -> MutexGuard<'_, StoreBackoff> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("status", &self.status())
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}
