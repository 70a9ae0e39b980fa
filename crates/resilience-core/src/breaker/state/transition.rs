//! A change of state ([`Transition`]) and why it happened ([`TransitionReason`]).

use std::time::Instant;

use serde::Serialize;

use super::StateKind;
use super::counts::BreakerCounters;

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionReason {
    /// `count` consecutive failures reached the threshold.
    ConsecutiveFailures {
        /// Failures in a row.
        count: u32,
    },
    /// The window's failure rate reached the threshold.
    FailureRate {
        /// The rate, 0..=1.
        rate: f64,
    },
    /// The window's slow-call rate reached the threshold.
    SlowCallRate {
        /// The rate, 0..=1.
        rate: f64,
    },
    /// The OPEN period ended.
    RecoveryTimeoutElapsed,
    /// A HALF_OPEN probe failed.
    ProbeFailed,
    /// Enough HALF_OPEN probes succeeded.
    ProbesSucceeded {
        /// Successful probes.
        count: u32,
    },
    /// An operator reset the breaker.
    ManualReset,
    /// An operator forced the breaker open.
    ForcedOpen,
}

/// A change of state, at the instant it was observed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// The state left.
    pub from: StateKind,
    /// The state entered.
    pub to: StateKind,
    /// When it happened.
    pub at: Instant,
    /// Why.
    pub reason: TransitionReason,
    /// Grows by one with each transition of this breaker. Hooks may be told of two
    /// transitions from two threads at once; a listener that keeps the latest state
    /// orders them by this.
    pub sequence: u64,
    /// The breaker's lifetime counters, this transition counted.
    pub counters: BreakerCounters,
}
