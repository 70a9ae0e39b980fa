//! What a breaker counts: its lifetime [`BreakerCounters`], and the rolling window's
//! buckets (`Tally`) with the rates read from them ([`WindowStats`]).

use serde::Serialize;

use crate::window::BucketValue;

/// Lifetime counters of a breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BreakerCounters {
    /// Calls that finished with a success.
    pub successes: u64,
    /// Calls that finished with a failure.
    pub failures: u64,
    /// Calls that finished and were ignored.
    pub ignored: u64,
    /// Finished calls (of any outcome) that were slow.
    pub slow: u64,
    /// Calls rejected because the breaker was open.
    pub rejected_open: u64,
    /// Calls rejected because the HALF_OPEN probe slots were taken.
    pub rejected_probe_limit: u64,
    /// Calls rejected by the bulkhead.
    pub rejected_bulkhead: u64,
    /// Transitions so far.
    pub transitions: u64,
}

/// Calls, failures and slow calls in the rolling window, with their rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WindowStats {
    /// Counted calls (successes and failures) in the window.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow: u32,
    /// failures / calls (0 with no calls).
    pub failure_rate: f64,
    /// slow / calls (0 with no calls).
    pub slow_call_rate: f64,
}

/// One bucket of the rolling window: counted calls, failures and slow calls.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    pub(super) calls: u32,
    pub(super) failures: u32,
    pub(super) slow: u32,
}

impl Tally {
    /// The counts with their rates (0 with no calls).
    pub(super) fn stats(&self) -> WindowStats {
        let rate = |n: u32| {
            if self.calls == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(self.calls)
            }
        };
        WindowStats {
            calls: self.calls,
            failures: self.failures,
            slow: self.slow,
            failure_rate: rate(self.failures),
            slow_call_rate: rate(self.slow),
        }
    }
}

impl BucketValue for Tally {
    fn merge(&mut self, other: &Self) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }
}
