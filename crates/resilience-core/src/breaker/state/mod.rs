//! The breaker as a pure state machine: every method takes the instant it runs at and
//! returns the transition it caused, so the owner decides what to log, count or persist.
//!
//! Files: `kind` (the states), `call` (outcomes, rejections, permits), `transition` (a
//! change of state and its reason), `counts` (lifetime counters, the window's tally and
//! rates), `machine` ([`CircuitBreaker`] itself).

mod call;
mod counts;
mod kind;
mod machine;
mod transition;

pub use call::{Outcome, Permit, Rejection};
pub use counts::{BreakerCounters, WindowStats};
pub use kind::{BreakerState, StateKind};
pub use machine::{CircuitBreaker, HISTORY_LEN};
pub use transition::{Transition, TransitionReason};
