//! Shared doubles: settings, budgets, candidates and failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::ManualClock;
use crate::fallback::ProviderError;
use crate::policy::{AttemptFailure, Candidate, FailureClass, PlanSettings};
use crate::retry::{BudgetConfig, RetryBudget, RetryPolicy};

/// Three attempts, 100 ms base, 1 s cap; waits for `Retry-After` up to 2 s; may bypass
/// ejection.
pub(super) fn settings() -> PlanSettings {
    PlanSettings {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        },
        max_retry_after: Duration::from_secs(2),
        bypass_when_all_ejected: true,
    }
}

/// A budget with plenty of tokens (`spent` false) or none at all.
pub(super) fn budget(spent: bool) -> RetryBudget {
    let config = BudgetConfig {
        ratio: if spent { 0.0 } else { 1.0 },
        min_per_sec: if spent { 0 } else { 100 },
        ..BudgetConfig::default()
    };
    let clock: Arc<ManualClock> = ManualClock::new();
    RetryBudget::new(config, clock).unwrap()
}

/// A healthy candidate whose breaker admits calls.
pub(super) fn up(id: &str) -> Candidate<'_> {
    Candidate {
        id,
        healthy: true,
        admits: true,
        cooling: None,
    }
}

/// A healthy candidate whose breaker is open.
pub(super) fn ejected(id: &str) -> Candidate<'_> {
    Candidate {
        admits: false,
        ..up(id)
    }
}

/// A candidate health checks took out.
pub(super) fn down(id: &str) -> Candidate<'_> {
    Candidate {
        healthy: false,
        ..up(id)
    }
}

/// A healthy candidate cooling down for `left`.
pub(super) fn cooling(id: &str, left: Duration) -> Candidate<'_> {
    Candidate {
        cooling: Some(left),
        ..up(id)
    }
}

/// A failure of `class` on `target`.
pub(super) fn failure(target: &str, class: FailureClass) -> AttemptFailure {
    let mut failure = AttemptFailure::new(target, class, format!("{class} on {target}"));
    if class == FailureClass::Timeout {
        failure.timeout = Some(Duration::from_millis(200));
    }
    failure
}

/// `failure` asking for `wait` first.
pub(super) fn asking(mut failure: AttemptFailure, wait: Duration) -> AttemptFailure {
    failure.retry_after = Some(wait);
    failure
}

/// The start of every test's request; deadlines are 10 s later unless a test says otherwise.
pub(super) fn start() -> (Instant, Instant) {
    let now = Instant::now();
    (now, now + Duration::from_secs(10))
}

pub(super) const MS: Duration = Duration::from_millis(1);

/// Every error a provider may fail with, carrying a failure of `class` where it can (the
/// chain's tests use it too).
pub(crate) fn every_error(class: FailureClass) -> Vec<ProviderError> {
    let failure = || Box::new(AttemptFailure::new("a", class, "x"));
    vec![
        ProviderError::CircuitOpen,
        ProviderError::NoneAvailable,
        ProviderError::Miss,
        ProviderError::Unavailable("store down".to_owned()),
        ProviderError::timeout(Duration::from_secs(1)),
        ProviderError::Timeout {
            after: Duration::from_secs(1),
            last: Some(failure()),
        },
        ProviderError::Upstream(failure()),
        ProviderError::Client(failure()),
    ]
}
