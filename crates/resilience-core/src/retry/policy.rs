//! How many times to try and how long to wait in between.

use std::time::Duration;

use crate::Error;

/// Attempts and backoff: exponential growth from `base_delay`, capped at `max_delay`, with
/// full jitter (the wait is drawn uniformly from zero to the capped value, so that clients
/// that failed together do not retry together).
///
/// Defaults: 3 attempts in all (the first and two retries), 100 ms base, 2 s cap.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; 1 means never retry.
    pub max_attempts: u32,
    /// The ceiling of the first retry's wait; doubles with each retry.
    pub base_delay: Duration,
    /// No wait is ever longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes one attempt only.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Checks the settings; the error names the bad one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_attempts == 0 {
            return Err(Error::invalid_config(
                "retry.max_attempts",
                "must be at least 1 (1 = no retries)",
            ));
        }
        if self.max_delay < self.base_delay {
            return Err(Error::invalid_config(
                "retry.max_delay",
                "must not be shorter than retry.base_delay",
            ));
        }
        Ok(())
    }

    /// Whether another attempt may follow `attempts_made` attempts.
    pub fn allows_another(&self, attempts_made: u32) -> bool {
        attempts_made < self.max_attempts
    }

    /// The largest wait before retry number `retry` (0 for the first retry):
    /// `min(max_delay, base_delay × 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry number `retry`, drawn with full jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.backoff_at(retry, rand::random::<f64>())
    }

    /// The wait before retry number `retry` for a given draw `unit` in `[0, 1)`.
    /// A draw that is not a number counts as 0.
    pub fn backoff_at(&self, retry: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.ceiling(retry).mul_f64(unit)
    }
}
