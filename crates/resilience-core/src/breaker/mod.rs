//! The circuit breaker.
//!
//! - [`config`]: [`BreakerConfig`] and [`ReopenBackoff`], defaults and validation.
//! - [`state`]: [`CircuitBreaker`], the pure state machine (explicit instants, transitions
//!   returned as values).
//! - [`shared`]: [`Breaker`], the thread-safe wrapper with a clock, hooks and call guards.
//!
//! CLOSED counts outcomes; N consecutive failures, or a failure or slow-call rate over the
//! rolling window once `minimum_calls` were seen, open it. OPEN rejects at once until the
//! recovery timeout (growing with jitter on repeated re-opening when configured), then the
//! breaker is HALF_OPEN: up to `half_open_max_calls` probes run at once; `success_threshold`
//! successes close it, one failure re-opens it. The bulkhead caps calls in flight in any
//! state. Outcomes are classified by the caller: an [`Outcome::Ignored`] call (a client
//! error) never moves the state. An outcome of a call let through before the last transition
//! is counted but does not move the state either, so a slow straggler cannot re-open a
//! breaker that has just closed.

pub mod config;
pub mod shared;
pub mod state;

#[cfg(test)]
mod tests;

pub use config::{BreakerConfig, ReopenBackoff};
pub use shared::{Breaker, BreakerGuard, BreakerSnapshot, TransitionHook, TransitionRecord};
pub use state::{
    BreakerCounters, BreakerState, CircuitBreaker, Outcome, Permit, Rejection, StateKind,
    Transition, TransitionReason, WindowStats,
};
