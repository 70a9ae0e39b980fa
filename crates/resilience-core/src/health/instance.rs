//! The health of one instance as a pure state machine, driven by explicit instants.
//!
//! An instance starts [`InstanceStatus::Unknown`]; the first active result decides at once,
//! because an instance nobody has looked at yet deserves neither traffic nor a long wait.
//! After that, health flips only on a run of consecutive results: `healthy_threshold`
//! active successes bring it back, `unhealthy_threshold` active failures take it out, and
//! `passive_failure_threshold` failed real requests in a row take it out too. Passive
//! signals never bring an instance back: an instance without traffic produces no passive
//! successes, so only the active checker can prove that it recovered.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::HealthCheckConfig;

/// Whether an instance may take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    /// No result yet; the instance takes no traffic.
    Unknown,
    /// Passing its checks; takes traffic.
    Healthy,
    /// Failing its checks or its traffic; takes none until active checks pass again.
    Unhealthy,
}

impl InstanceStatus {
    /// The lowercase name used in JSON and logs: `unknown`, `healthy`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of [`InstanceStatus`], returned by the call that caused it so the caller can log
/// it, count it and persist it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTransition {
    /// The status before.
    pub from: InstanceStatus,
    /// The status after.
    pub to: InstanceStatus,
    /// The instant of the result that caused it.
    pub at: Instant,
    /// Why, in words, e.g. `3 consecutive failed checks: connection refused`.
    pub reason: String,
}

/// The health of one instance: its status, its runs of results and what the last check saw.
///
/// Pure: it reads no clock and does no I/O; each `record_*` call takes the instant of the
/// result and returns the [`HealthTransition`] it caused, if any.
#[derive(Debug, Clone)]
pub struct InstanceHealth {
    config: HealthCheckConfig,
    status: InstanceStatus,
    consecutive_successes: u32,
    consecutive_failures: u32,
    consecutive_passive_failures: u32,
    last_check: Option<Instant>,
    last_error: Option<String>,
    last_latency: Option<Duration>,
}

impl InstanceHealth {
    /// A new instance, [`InstanceStatus::Unknown`], with the thresholds of `config` (which
    /// the caller has validated; a zero threshold flips on the first result).
    pub fn new(config: HealthCheckConfig) -> Self {
        Self {
            config,
            status: InstanceStatus::Unknown,
            consecutive_successes: 0,
            consecutive_failures: 0,
            consecutive_passive_failures: 0,
            last_check: None,
            last_error: None,
            last_latency: None,
        }
    }

    /// Records an active check that finished at `now` after `latency`: `Ok(())` when the
    /// instance answered well, `Err(message)` otherwise (including a timeout).
    ///
    /// Returns the transition it caused: the first result ever always causes one; later, a
    /// success completes a run of `healthy_threshold` for an unhealthy instance, a failure a
    /// run of `unhealthy_threshold` for a healthy one.
    pub fn record_active(
        &mut self,
        now: Instant,
        latency: Duration,
        result: Result<(), String>,
    ) -> Option<HealthTransition> {
        self.last_check = Some(now);
        self.last_latency = Some(latency);
        match result {
            Ok(()) => self.active_success(now),
            Err(error) => self.active_failure(now, error),
        }
    }

    /// Records the outcome of a real request observed at `now` (`ok` = the instance served
    /// it). A run of `passive_failure_threshold` failures marks the instance unhealthy; a
    /// success only resets that run, it never marks the instance healthy.
    pub fn record_passive(&mut self, now: Instant, ok: bool) -> Option<HealthTransition> {
        if ok {
            self.consecutive_passive_failures = 0;
            return None;
        }
        self.consecutive_passive_failures = self.consecutive_passive_failures.saturating_add(1);
        let threshold = self.config.passive_failure_threshold;
        if self.status == InstanceStatus::Unhealthy || self.consecutive_passive_failures < threshold
        {
            return None;
        }
        // Recovery must be proven afresh by the active checker.
        self.consecutive_successes = 0;
        self.consecutive_passive_failures = 0;
        self.transition(
            now,
            InstanceStatus::Unhealthy,
            format!("{threshold} consecutive failed requests"),
        )
    }

    /// The current status.
    pub fn status(&self) -> InstanceStatus {
        self.status
    }

    /// Whether the instance may take traffic (only when [`InstanceStatus::Healthy`]).
    pub fn is_healthy(&self) -> bool {
        self.status == InstanceStatus::Healthy
    }

    /// The current run of active successes (0 after a failure).
    pub fn consecutive_successes(&self) -> u32 {
        self.consecutive_successes
    }

    /// The current run of active failures (0 after a success).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The current run of failed real requests (0 after a served one or once it has marked
    /// the instance unhealthy).
    pub fn consecutive_passive_failures(&self) -> u32 {
        self.consecutive_passive_failures
    }

    /// When the last active check finished; `None` before the first.
    pub fn last_check(&self) -> Option<Instant> {
        self.last_check
    }

    /// The message of the last failed active check; kept after later successes, for
    /// operators looking at a flapping instance.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// How long the last active check took; `None` before the first.
    pub fn last_latency(&self) -> Option<Duration> {
        self.last_latency
    }

    /// The thresholds this state machine applies.
    pub fn config(&self) -> &HealthCheckConfig {
        &self.config
    }

    fn active_success(&mut self, now: Instant) -> Option<HealthTransition> {
        self.consecutive_failures = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        let threshold = self.config.healthy_threshold;
        match self.status {
            InstanceStatus::Healthy => None,
            InstanceStatus::Unknown => {
                self.consecutive_passive_failures = 0;
                self.transition(
                    now,
                    InstanceStatus::Healthy,
                    "first check passed".to_owned(),
                )
            }
            InstanceStatus::Unhealthy if self.consecutive_successes >= threshold => {
                self.consecutive_passive_failures = 0;
                self.transition(
                    now,
                    InstanceStatus::Healthy,
                    format!("{threshold} consecutive checks passed"),
                )
            }
            InstanceStatus::Unhealthy => None,
        }
    }

    fn active_failure(&mut self, now: Instant, error: String) -> Option<HealthTransition> {
        self.consecutive_successes = 0;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let threshold = self.config.unhealthy_threshold;
        let reason = match self.status {
            InstanceStatus::Unhealthy => None,
            InstanceStatus::Unknown => Some(format!("first check failed: {error}")),
            InstanceStatus::Healthy if self.consecutive_failures >= threshold => {
                Some(format!("{threshold} consecutive checks failed: {error}"))
            }
            InstanceStatus::Healthy => None,
        };
        self.last_error = Some(error);
        let reason = reason?;
        self.transition(now, InstanceStatus::Unhealthy, reason)
    }

    fn transition(
        &mut self,
        now: Instant,
        to: InstanceStatus,
        reason: String,
    ) -> Option<HealthTransition> {
        let from = self.status;
        self.status = to;
        Some(HealthTransition {
            from,
            to,
            at: now,
            reason,
        })
    }
}
