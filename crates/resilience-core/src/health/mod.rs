//! Health: per-instance health from active and passive signals, and the composite health
//! checker behind `/health`.
//!
//! Two questions live here. *Which upstream instances may take traffic?* is answered by
//! [`InstanceHealth`], a pure state machine that flips only after N consecutive results,
//! kept per instance id in a [`HealthTracker`] whose [`HealthTracker::is_healthy`] read
//! takes no lock, and fed by the [`ActiveHealthChecker`] (periodic probes through a
//! [`HealthProbe`] the binary implements over HTTP) and by passive signals from real
//! traffic. *Is this process fit to serve?* is answered by the [`CompositeHealthChecker`],
//! which runs named [`HealthCheck`]s concurrently under a timeout each and folds them into
//! one [`HealthReport`]: a critical check failing makes it unhealthy (HTTP 503), anything
//! else failing only degrades it (HTTP 200). Ready-made checks: [`FnCheck`],
//! [`RedisPingCheck`] and [`SystemResourcesCheck`].
//!
//! - `config`: [`HealthCheckConfig`], the thresholds and timings.
//! - `instance`: the per-instance state machine and its [`HealthTransition`]s.
//! - `tracker`: the thread-safe, lock-free-read set of instance states.
//! - `active`: the probe trait and the round / background-loop runner.
//! - `composite`: check trait, outcomes, aggregation and the report.
//! - `checks`: [`FnCheck`] and [`RedisPingCheck`].
//! - `system`: CPU and memory sampling through `sysinfo`.
//!
//! The core knows no HTTP: a probe or a check is any future, so every rule here is tested
//! with fake probes and paused time.

mod active;
mod checks;
mod composite;
mod config;
mod instance;
mod system;
mod tracker;

#[cfg(test)]
mod tests;

pub use active::{
    ActiveHealthChecker, CheckerHandle, HealthProbe, ProbeTarget, RoundReport, TransitionHook,
};
pub use checks::{DEFAULT_REDIS_PING_TIMEOUT, FnCheck, RedisPingCheck};
pub use composite::{
    CheckOutcome, CheckReport, CompositeHealthChecker, DEFAULT_DEPENDENCY_TIMEOUT, HealthCheck,
    HealthReport, HealthStatus,
};
pub use config::{
    DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT, DEFAULT_HEALTHY_THRESHOLD,
    DEFAULT_PASSIVE_FAILURE_THRESHOLD, DEFAULT_UNHEALTHY_THRESHOLD, HealthCheckConfig,
};
pub use instance::{HealthTransition, InstanceHealth, InstanceStatus};
pub use system::{
    DEFAULT_MEMORY_DEGRADED_PERCENT, ResourceSample, ResourceSampler, SysinfoSampler,
    SystemResourcesCheck,
};
pub use tracker::{HealthTracker, InstanceHealthReport};

/// A boxed, sendable future: what [`HealthProbe`] and [`HealthCheck`] return, so that both
/// traits stay object-safe. The same alias as the registry's.
pub use crate::registry::BoxFuture;
