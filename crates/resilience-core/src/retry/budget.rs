//! The retry budget: retries may be at most a fraction of recent requests, plus a small
//! floor, so that when a dependency is down retries cannot multiply the load on it.
//!
//! As in tower's `retry::budget` and Finagle: every original request deposits, every retry
//! withdraws; a retry is allowed while `retries < ratio × requests + floor × window_secs`
//! over the rolling window.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::Error;
use crate::clock::SharedClock;
use crate::window::{BucketValue, RollingWindow};

/// Settings of a [`RetryBudget`].
///
/// Defaults: retries up to 20 % of requests over a 10 s window, plus 1 retry per second.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed per request seen in the window (0 ≤ r ≤ 1000).
    pub ratio: f64,
    /// Retries per second always allowed, so a quiet service can still retry.
    pub min_per_sec: u32,
    /// The window the counts are kept over.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 1,
            window: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    /// Checks the settings; the error names the bad one.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.ratio >= 0.0 && self.ratio <= 1000.0) {
            return Err(Error::invalid_config(
                "retry_budget.ratio",
                "must be between 0 and 1000",
            ));
        }
        if self.window < Duration::from_secs(1) {
            return Err(Error::invalid_config(
                "retry_budget.window",
                "must be at least one second",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    requests: u32,
    retries: u32,
}

impl BucketValue for Tally {
    fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.retries += other.retries;
    }
}

/// A thread-safe retry budget over a rolling window, reading time from a clock.
#[derive(Debug)]
pub struct RetryBudget {
    config: BudgetConfig,
    clock: SharedClock,
    window: Mutex<RollingWindow<Tally>>,
}

/// The budget's counts at one instant.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BudgetSnapshot {
    /// Original requests in the window.
    pub requests: u32,
    /// Retries in the window.
    pub retries: u32,
    /// Retries the window allows in all.
    pub allowed: u32,
}

impl RetryBudget {
    /// A budget with nothing deposited; fails if `config` is invalid.
    pub fn new(config: BudgetConfig, clock: SharedClock) -> Result<Self, Error> {
        config.validate()?;
        let window = RollingWindow::new(clock.now(), config.window, 10);
        Ok(Self {
            config,
            clock,
            window: Mutex::new(window),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RollingWindow<Tally>> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn allowed(&self, requests: u32) -> u32 {
        let floor = f64::from(self.config.min_per_sec) * self.config.window.as_secs_f64();
        let allowed = self.config.ratio * f64::from(requests) + floor;
        // Saturating float-to-int conversion, by the language's rules.
        allowed.floor() as u32
    }

    /// Counts one original request (call once per request, not per attempt).
    pub fn deposit(&self) {
        let now = self.clock.now();
        self.lock().add(now, |t| t.requests += 1);
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is spent.
    pub fn try_withdraw(&self) -> bool {
        let now = self.clock.now();
        let mut window = self.lock();
        let tally = window.sum(now);
        if tally.retries >= self.allowed(tally.requests) {
            return false;
        }
        window.add(now, |t| t.retries += 1);
        true
    }

    /// The counts now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let now = self.clock.now();
        let tally = self.lock().sum(now);
        BudgetSnapshot {
            requests: tally.requests,
            retries: tally.retries,
            allowed: self.allowed(tally.requests),
        }
    }
}
