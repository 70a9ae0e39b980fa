//! The breaker's states: [`StateKind`], the name, and [`BreakerState`], with each
//! state's data.

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The three states, serialised exactly as `CLOSED`, `OPEN`, `HALF_OPEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateKind {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected without being made.
    Open,
    /// A limited number of probe calls decide whether to close or re-open.
    HalfOpen,
}

impl StateKind {
    /// The serialised name (`CLOSED`, `OPEN`, `HALF_OPEN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        }
    }

    /// The lab's gauge encoding: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state with the data each state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Rejecting until `until`; `None` when forced open (until a reset).
    Open {
        /// When probes start being let through.
        until: Option<Instant>,
    },
    /// Probing.
    HalfOpen {
        /// Probes running now.
        probes: u32,
        /// Probes that succeeded so far.
        successes: u32,
    },
}

impl BreakerState {
    /// The state's name.
    pub fn kind(&self) -> StateKind {
        match self {
            Self::Closed => StateKind::Closed,
            Self::Open { .. } => StateKind::Open,
            Self::HalfOpen { .. } => StateKind::HalfOpen,
        }
    }
}
