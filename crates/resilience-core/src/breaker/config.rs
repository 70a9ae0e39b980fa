//! Breaker settings, their defaults and their validation.

use std::time::Duration;

use crate::Error;
use crate::window::MAX_BUCKETS;

/// The longest period any breaker setting accepts: a day. Longer is a typo, and the bound
/// keeps instant arithmetic far from overflowing.
pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// How a breaker decides to open, how long it stays open and how it probes.
///
/// Defaults follow the lab: open after 5 consecutive failures, stay open 30 s, close after
/// 3 successful probes; the rate thresholds, the reopen backoff and the bulkhead are off.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures (in CLOSED) that open the breaker; 0 turns this rule off.
    pub failure_threshold: u32,
    /// Failure rate over the rolling window (0 < r ≤ 1) that opens the breaker, once
    /// `minimum_calls` were seen in the window; `None` turns this rule off.
    pub failure_rate_threshold: Option<f64>,
    /// Slow-call rate over the rolling window (0 < r ≤ 1) that opens the breaker, once
    /// `minimum_calls` were seen; `None` turns this rule off.
    pub slow_call_rate_threshold: Option<f64>,
    /// A call that takes at least this long counts as slow.
    pub slow_call_duration: Duration,
    /// Length of the rolling window the rates are computed over.
    pub window: Duration,
    /// Buckets the window is split into (its time resolution).
    pub window_buckets: u32,
    /// Calls that must be seen in the window before a rate can open the breaker.
    pub minimum_calls: u32,
    /// How long OPEN lasts before probes are let through (HALF_OPEN).
    pub recovery_timeout: Duration,
    /// Probe calls allowed at the same time in HALF_OPEN.
    pub half_open_max_calls: u32,
    /// Successful probes that close the breaker.
    pub success_threshold: u32,
    /// Longer OPEN periods when probes keep failing; `None` (default): always
    /// `recovery_timeout`.
    pub reopen_backoff: Option<ReopenBackoff>,
    /// Bulkhead: calls allowed in flight at once, in any state; `None` means unlimited.
    pub max_concurrent_calls: Option<u32>,
}

/// Exponential growth of the OPEN period after repeated re-opening, with jitter and a cap.
#[derive(Debug, Clone, PartialEq)]
pub struct ReopenBackoff {
    /// Each re-opening from HALF_OPEN multiplies the previous OPEN period by this (≥ 1).
    pub multiplier: f64,
    /// The OPEN period never exceeds this.
    pub max: Duration,
    /// Up to this fraction (0 ≤ j < 1) of a grown period is removed at random, so that many
    /// breakers opened together do not probe together.
    pub jitter: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            failure_rate_threshold: None,
            slow_call_rate_threshold: None,
            slow_call_duration: Duration::from_secs(5),
            window: Duration::from_secs(10),
            window_buckets: 10,
            minimum_calls: 20,
            recovery_timeout: Duration::from_secs(30),
            half_open_max_calls: 3,
            success_threshold: 3,
            reopen_backoff: None,
            max_concurrent_calls: None,
        }
    }
}

impl Default for ReopenBackoff {
    fn default() -> Self {
        Self {
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl BreakerConfig {
    /// Every problem with these settings, each naming its setting; empty when valid.
    pub fn problems(&self) -> Vec<Error> {
        let mut problems = Vec::new();
        let mut bad = |setting: &str, reason: &str| {
            problems.push(Error::invalid_config(format!("breaker.{setting}"), reason));
        };
        if self.failure_threshold == 0
            && self.failure_rate_threshold.is_none()
            && self.slow_call_rate_threshold.is_none()
        {
            bad(
                "failure_threshold",
                "0 with no rate threshold: the breaker could never open",
            );
        }
        for (name, rate) in [
            ("failure_rate_threshold", self.failure_rate_threshold),
            ("slow_call_rate_threshold", self.slow_call_rate_threshold),
        ] {
            if let Some(rate) = rate
                && !(rate > 0.0 && rate <= 1.0)
            {
                bad(name, "must be a fraction in (0, 1]");
            }
        }
        for (name, period) in [
            ("window", self.window),
            ("recovery_timeout", self.recovery_timeout),
            ("slow_call_duration", self.slow_call_duration),
        ] {
            if period.is_zero() || period > MAX_PERIOD {
                bad(name, "must be longer than zero and at most a day");
            }
        }
        if self.window_buckets == 0 || self.window_buckets > MAX_BUCKETS {
            bad("window_buckets", "must be between 1 and 1000");
        }
        if self.half_open_max_calls == 0 {
            bad("half_open_max_calls", "must be at least 1");
        }
        if self.success_threshold == 0 {
            bad("success_threshold", "must be at least 1");
        }
        if self.max_concurrent_calls == Some(0) {
            bad("max_concurrent_calls", "must be at least 1 when set");
        }
        if let Some(backoff) = &self.reopen_backoff {
            if !(backoff.multiplier >= 1.0 && backoff.multiplier.is_finite()) {
                bad("reopen_backoff.multiplier", "must be a finite number ≥ 1");
            }
            if backoff.max < self.recovery_timeout || backoff.max > MAX_PERIOD {
                bad(
                    "reopen_backoff.max",
                    "must be at least recovery_timeout and at most a day",
                );
            }
            if !(0.0..1.0).contains(&backoff.jitter) {
                bad("reopen_backoff.jitter", "must be a fraction in [0, 1)");
            }
        }
        problems
    }

    /// Checks the settings; the error names the first bad setting (see [`Self::problems`]
    /// for all of them).
    pub fn validate(&self) -> Result<(), Error> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// The OPEN period after `reopens` consecutive re-openings from HALF_OPEN, for a jitter
    /// draw `unit` in `[0, 1)`.
    pub(crate) fn open_period(&self, reopens: u32, unit: f64) -> Duration {
        let Some(backoff) = &self.reopen_backoff else {
            return self.recovery_timeout;
        };
        if reopens == 0 {
            return self.recovery_timeout;
        }
        let exponent = i32::try_from(reopens).unwrap_or(i32::MAX);
        let grown = self.recovery_timeout.as_secs_f64() * backoff.multiplier.powi(exponent);
        let capped = grown.min(backoff.max.as_secs_f64());
        let jittered = capped * (1.0 - backoff.jitter * unit.clamp(0.0, 1.0));
        Duration::try_from_secs_f64(jittered)
            .unwrap_or(backoff.max)
            .max(self.recovery_timeout)
    }
}
