//! When to try the shared store again after it failed.
//!
//! While Redis is down, a check that waited for its timeout on every request would add the
//! timeout to every request. After a failure the store is skipped (the failure mode answers
//! at once) for a back-off period — [`INITIAL_BACKOFF`], doubling after each failed trial up
//! to [`MAX_BACKOFF`] — then one call tries it again; a success ends the outage. Pure and
//! time-injected: the caller passes `now` and holds it behind a small mutex.

use std::time::{Duration, Instant};

/// The first back-off period after the store fails.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);

/// The longest back-off period.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the shared store is up, and if not when to try it again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreBackoff {
    outage: Option<Outage>,
}

/// An outage in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outage {
    /// The current back-off period.
    delay: Duration,
    /// No call tries the store before this instant.
    retry_at: Instant,
    /// A call was let through to try the store and has not reported yet.
    trial: bool,
}

impl StoreBackoff {
    /// Whether the store is believed up.
    pub fn is_available(&self) -> bool {
        self.outage.is_none()
    }

    /// Whether a call at `now` should use the store: always while it is up; during an outage
    /// only once the back-off period has passed (the caller then calls [`Self::trying`]).
    pub fn should_try(&self, now: Instant) -> bool {
        self.outage.as_ref().is_none_or(|o| now >= o.retry_at)
    }

    /// Records that a call at `now` tries the store during an outage: other calls keep
    /// skipping it for another back-off period, so one call probes at a time (and a probe
    /// that never reports — its request was cancelled — only delays the next by a period).
    pub fn trying(&mut self, now: Instant) {
        if let Some(outage) = &mut self.outage {
            outage.retry_at = now + outage.delay;
            outage.trial = true;
        }
    }

    /// Records a failure at `now`; `true` when it starts an outage (the caller logs that
    /// once). A failed trial doubles the back-off period; a failure of a call that began
    /// before the outage was known changes nothing.
    pub fn failed(&mut self, now: Instant) -> bool {
        match &mut self.outage {
            None => {
                self.outage = Some(Outage {
                    delay: INITIAL_BACKOFF,
                    retry_at: now + INITIAL_BACKOFF,
                    trial: false,
                });
                true
            }
            Some(outage) if outage.trial => {
                outage.delay = (outage.delay * 2).min(MAX_BACKOFF);
                outage.retry_at = now + outage.delay;
                outage.trial = false;
                false
            }
            Some(_) => false,
        }
    }

    /// Records a success; `true` when it ends an outage (the caller logs that once).
    pub fn succeeded(&mut self) -> bool {
        self.outage.take().is_some()
    }
}
