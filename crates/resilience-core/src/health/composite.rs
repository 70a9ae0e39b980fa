//! The composite health checker behind `/health`: named checks run concurrently, each under
//! a timeout, folded into one [`HealthReport`].
//!
//! Aggregation, the same for the gateway and llm-service: a failing *critical* check makes
//! the process unhealthy (HTTP 503: take it out of rotation); a failing non-critical check or
//! any degraded one only makes it degraded (HTTP 200: still serving, with less). So a lost
//! Redis or a busy CPU never stops traffic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::BoxFuture;
use crate::clock::{SharedClock, SystemClock, unix_millis};

/// Default limit on one check of the composite checker; a check that takes longer is
/// reported unhealthy (`timed out after N ms`).
pub const DEFAULT_DEPENDENCY_TIMEOUT: Duration = Duration::from_millis(2000);

/// The health of a check or of the whole process; JSON `healthy`, `degraded`, `unhealthy`.
///
/// Ordered from best to worst, so the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Serving, with reduced capacity or a non-critical dependency down.
    Degraded,
    /// Not fit to serve.
    Unhealthy,
}

impl HealthStatus {
    /// The lowercase name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }

    /// The HTTP status `/health` answers with: 200 when healthy or degraded, 503 when
    /// unhealthy.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Healthy | Self::Degraded => 200,
            Self::Unhealthy => 503,
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The verdict.
    pub status: HealthStatus,
    /// A short explanation, typically the error of a failing dependency.
    pub message: Option<String>,
    /// Structured readings (latencies, percentages) for operators.
    pub details: Option<serde_json::Value>,
}

impl CheckOutcome {
    /// A healthy outcome without message or details.
    pub fn healthy() -> Self {
        Self::new(HealthStatus::Healthy, None)
    }

    /// A degraded outcome saying why.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Degraded, Some(message.into()))
    }

    /// An unhealthy outcome saying why.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Unhealthy, Some(message.into()))
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    fn new(status: HealthStatus, message: Option<String>) -> Self {
        Self {
            status,
            message,
            details: None,
        }
    }
}

/// One named check of the composite checker: a dependency (Redis, a database) or a
/// resource (memory).
pub trait HealthCheck: Send + Sync {
    /// The check's name, its key in [`HealthReport::checks`].
    fn name(&self) -> &str;

    /// Whether failing it makes the whole process unhealthy (503) rather than degraded.
    fn critical(&self) -> bool;

    /// Runs the check. Need not bound itself: the composite checker applies a timeout.
    fn check(&self) -> BoxFuture<'_, CheckOutcome>;
}

/// One check's result in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The verdict.
    pub status: HealthStatus,
    /// Whether the check is critical.
    pub critical: bool,
    /// The check's explanation, if any.
    pub message: Option<String>,
    /// The check's structured readings, if any.
    pub details: Option<serde_json::Value>,
    /// How long the check took, in milliseconds.
    pub duration_ms: u64,
}

/// The result of one run of the composite checker: the body of `/health`'s checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The aggregate verdict; see [`HealthReport::aggregate`].
    pub overall_status: HealthStatus,
    /// Every check's result, by name.
    pub checks: BTreeMap<String, CheckReport>,
    /// When the run started, in Unix milliseconds.
    pub checked_at_ms: u64,
}

impl HealthReport {
    /// The HTTP status `/health` answers with: 200 when healthy or degraded, 503 when
    /// unhealthy.
    pub fn http_status(&self) -> u16 {
        self.overall_status.http_status()
    }

    /// Folds check results into one verdict: unhealthy if a critical check is unhealthy;
    /// otherwise degraded if any check is unhealthy or degraded; otherwise (including no
    /// checks at all) healthy.
    pub fn aggregate<'a>(checks: impl IntoIterator<Item = &'a CheckReport>) -> HealthStatus {
        checks
            .into_iter()
            .map(|check| match (check.status, check.critical) {
                (HealthStatus::Unhealthy, true) => HealthStatus::Unhealthy,
                (HealthStatus::Healthy, _) => HealthStatus::Healthy,
                _ => HealthStatus::Degraded,
            })
            .max()
            .unwrap_or(HealthStatus::Healthy)
    }
}

struct Entry {
    check: Arc<dyn HealthCheck>,
    timeout: Option<Duration>,
}

/// A set of named [`HealthCheck`]s run together.
///
/// Built once at start-up; [`CompositeHealthChecker::check`] runs every check concurrently,
/// each under its own timeout (default [`DEFAULT_DEPENDENCY_TIMEOUT`]).
pub struct CompositeHealthChecker {
    checks: Vec<Entry>,
    default_timeout: Duration,
    clock: SharedClock,
}

impl std::fmt::Debug for CompositeHealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeHealthChecker")
            .field("checks", &self.names())
            .field("default_timeout", &self.default_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for CompositeHealthChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl CompositeHealthChecker {
    /// A checker without checks (it reports healthy), using the system clock for
    /// `checked_at_ms`.
    pub fn new() -> Self {
        Self {
            checks: Vec::new(),
            default_timeout: DEFAULT_DEPENDENCY_TIMEOUT,
            clock: SystemClock::shared(),
        }
    }

    /// Adds `check` under the default timeout; replaces a check of the same name.
    pub fn with_check(self, check: impl HealthCheck + 'static) -> Self {
        self.push(Arc::new(check), None)
    }

    /// Adds a shared `check` under the default timeout; replaces a check of the same name.
    pub fn with_shared_check(self, check: Arc<dyn HealthCheck>) -> Self {
        self.push(check, None)
    }

    /// Adds `check` bounded by `timeout` instead of the default; replaces a check of the
    /// same name.
    pub fn with_check_timeout(self, check: impl HealthCheck + 'static, timeout: Duration) -> Self {
        self.push(Arc::new(check), Some(timeout))
    }

    /// Sets the timeout of every check added without its own (default
    /// [`DEFAULT_DEPENDENCY_TIMEOUT`]).
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Takes `checked_at_ms` from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The names of the checks, in the order they were added.
    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|entry| entry.check.name()).collect()
    }

    /// How many checks there are.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// Whether there are no checks.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Runs every check concurrently and aggregates the results.
    ///
    /// Never fails: a check that exceeds its timeout is reported unhealthy with `timed out
    /// after N ms`, one that panics unhealthy with `check panicked`. Must run inside a Tokio
    /// runtime (checks are spawned tasks).
    pub async fn check(&self) -> HealthReport {
        let checked_at_ms = unix_millis(self.clock.wall());
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        let mut names = std::collections::HashMap::with_capacity(self.checks.len());
        for entry in &self.checks {
            let check = Arc::clone(&entry.check);
            let timeout = entry.timeout.unwrap_or(self.default_timeout);
            let task = tasks.spawn(async move {
                let check_started = Instant::now();
                let outcome = match tokio::time::timeout(timeout, check.check()).await {
                    Ok(outcome) => outcome,
                    Err(_) => CheckOutcome::unhealthy(format!(
                        "timed out after {} ms",
                        timeout.as_millis()
                    )),
                };
                (outcome, check_started.elapsed())
            });
            names.insert(
                task.id(),
                (entry.check.name().to_owned(), entry.check.critical()),
            );
        }

        let mut checks = BTreeMap::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (task, outcome, elapsed) = match joined {
                Ok((task, (outcome, elapsed))) => (task, outcome, elapsed),
                Err(error) => {
                    let message = if error.is_panic() {
                        "check panicked"
                    } else {
                        "check cancelled"
                    };
                    (
                        error.id(),
                        CheckOutcome::unhealthy(message),
                        started.elapsed(),
                    )
                }
            };
            let Some((name, critical)) = names.remove(&task) else {
                continue;
            };
            let report = CheckReport {
                status: outcome.status,
                critical,
                message: outcome.message,
                details: outcome.details,
                duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            };
            checks.insert(name, report);
        }
        HealthReport {
            overall_status: HealthReport::aggregate(checks.values()),
            checks,
            checked_at_ms,
        }
    }

    fn push(mut self, check: Arc<dyn HealthCheck>, timeout: Option<Duration>) -> Self {
        self.checks
            .retain(|entry| entry.check.name() != check.name());
        self.checks.push(Entry { check, timeout });
        self
    }
}
