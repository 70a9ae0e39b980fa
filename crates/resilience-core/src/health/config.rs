//! The timings and thresholds of instance health checking, shared by the state machine, the
//! tracker and the active checker so that one validated value drives all three.

use std::time::Duration;

use crate::{Error, Result};

/// Default time between two active check rounds (the gateway's `HEALTH_CHECK_INTERVAL_MS`).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(5000);
/// Default limit on one active probe; a probe that takes longer counts as a failure.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_millis(2000);
/// Default number of consecutive active successes that make an unhealthy instance healthy.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default number of consecutive active failures that make a healthy instance unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Default number of consecutive failed real requests that make an instance unhealthy.
pub const DEFAULT_PASSIVE_FAILURE_THRESHOLD: u32 = 5;

/// How instances are checked and when their health flips.
///
/// Built by the binary from its settings, checked once with [`HealthCheckConfig::validate`]
/// (the tracker's constructor does it too), then copied wherever it is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Time between two active rounds; default [`DEFAULT_CHECK_INTERVAL`].
    pub interval: Duration,
    /// Limit on one probe; default [`DEFAULT_CHECK_TIMEOUT`]. Must not exceed `interval`.
    pub timeout: Duration,
    /// Consecutive active successes that bring an unhealthy instance back; default 2.
    pub healthy_threshold: u32,
    /// Consecutive active failures that take a healthy instance out; default 3.
    pub unhealthy_threshold: u32,
    /// Consecutive failed real requests that take an instance out; default 5.
    pub passive_failure_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            passive_failure_threshold: DEFAULT_PASSIVE_FAILURE_THRESHOLD,
        }
    }
}

impl HealthCheckConfig {
    /// Checks every setting; fails with [`Error::InvalidConfig`] naming the first bad one
    /// (`health.interval`, `health.timeout`, `health.healthy_threshold`, ...).
    ///
    /// Zero durations and zero thresholds are rejected (a zero threshold would flip health
    /// on no evidence at all), and so is a timeout longer than the interval, which would let
    /// a hung instance delay every later round.
    pub fn validate(&self) -> Result<()> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// Every problem with this configuration, each naming its setting; empty when valid.
    pub fn problems(&self) -> Vec<Error> {
        let mut problems = Vec::new();
        if self.interval.is_zero() {
            problems.push(Error::invalid_config(
                "health.interval",
                "must be greater than zero",
            ));
        }
        if self.timeout.is_zero() {
            problems.push(Error::invalid_config(
                "health.timeout",
                "must be greater than zero",
            ));
        } else if !self.interval.is_zero() && self.timeout > self.interval {
            problems.push(Error::invalid_config(
                "health.timeout",
                format!(
                    "{} ms exceeds health.interval ({} ms)",
                    self.timeout.as_millis(),
                    self.interval.as_millis()
                ),
            ));
        }
        let thresholds = [
            ("health.healthy_threshold", self.healthy_threshold),
            ("health.unhealthy_threshold", self.unhealthy_threshold),
            (
                "health.passive_failure_threshold",
                self.passive_failure_threshold,
            ),
        ];
        for (setting, value) in thresholds {
            if value == 0 {
                problems.push(Error::invalid_config(setting, "must be at least 1"));
            }
        }
        problems
    }
}
