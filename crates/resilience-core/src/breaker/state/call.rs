//! One call through the breaker: how it ended ([`Outcome`]), why it was refused
//! ([`Rejection`]), and the [`Permit`] it holds while it runs.

use std::time::{Duration, Instant};

/// How a finished call counts, as the caller classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call worked.
    Success,
    /// The dependency failed (5xx, timeout, connection error…).
    Failure,
    /// Says nothing about the dependency's health (a client error, a cancelled call).
    Ignored,
}

/// Why a call was not let through; the call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The breaker is OPEN; `retry_after` is the time left (`None` when forced open).
    #[error("circuit breaker is open")]
    BreakerOpen {
        /// Time until probes are let through, if known.
        retry_after: Option<Duration>,
    },
    /// HALF_OPEN and every probe slot is taken.
    #[error("circuit breaker is half-open and its probe slots are taken")]
    ProbeLimit,
    /// The bulkhead's limit of concurrent calls is reached.
    #[error("bulkhead is full")]
    BulkheadFull,
}

impl Rejection {
    /// A short machine-readable reason (`open`, `probe_limit`, `bulkhead_full`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BreakerOpen { .. } => "open",
            Self::ProbeLimit => "probe_limit",
            Self::BulkheadFull => "bulkhead_full",
        }
    }
}

/// Leave to make one call; hand it back with
/// [`CircuitBreaker::record`](super::CircuitBreaker::record) when it ends.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be given back with `record`, or its slot stays taken"]
pub struct Permit {
    generation: u64,
    started: Instant,
    probe: bool,
    /// Counted in `in_flight` (false for calls admitted on the shared breaker's lock-free
    /// path, which is only taken when no bulkhead needs the count).
    tracked: bool,
}

impl Permit {
    /// A permit for a call the machine admitted at `started` in `generation`, counted in its
    /// `in_flight`.
    pub(super) fn tracked(generation: u64, started: Instant, probe: bool) -> Self {
        Self {
            generation,
            started,
            probe,
            tracked: true,
        }
    }

    /// A permit for a call admitted without asking the machine, in CLOSED at `generation`
    /// (see [`CircuitBreaker::admits_freely`](super::CircuitBreaker::admits_freely)).
    pub(crate) fn untracked(generation: u64, started: Instant) -> Self {
        Self {
            generation,
            started,
            probe: false,
            tracked: false,
        }
    }

    /// The generation the call was admitted in.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the call is counted in the machine's `in_flight`.
    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// Whether this call is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// When the call was let through.
    pub fn started(&self) -> Instant {
        self.started
    }
}
