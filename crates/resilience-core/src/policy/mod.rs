//! Every resilience decision of a request, in one place and pure in time: what happens
//! after each outcome. The binaries execute the steps (call, sleep, answer); they decide
//! nothing of their own.
//!
//! - [`outcome`]: [`FailureClass`], the one classification of a failed attempt, and
//!   [`AttemptFailure`], the failure as a value the plan consumes and the final error
//!   carries.
//! - [`plan`]: [`AttemptPlan`], one request on one target — which candidate next, after
//!   what wait, within the retry budget and the deadline, honouring `Retry-After` — or give
//!   up, and with which [`Exhausted`] error (its rules are written there).
//! - [`continuation`]: a stream that broke after it reached the client — continued or not
//!   ([`continuation::decide`]), by prefill or by restarting and splicing
//!   ([`continuation::resume_with`], [`continuation::Splice`]).
//! - [`fallback`]: between targets — [`after_provider_failure`] (the fallback chain moves
//!   on or stops) and [`follow_context_fallback`] (a route's larger-context fallback).
//!
//! The breakers' own decisions (trip, probe, close) live in [`crate::breaker`]; the budget's
//! in [`crate::retry`].

pub mod continuation;
pub mod fallback;
pub mod outcome;
pub mod plan;

#[cfg(test)]
pub(crate) mod tests;

pub use fallback::{ChainStep, after_provider_failure, follow_context_fallback};
pub use outcome::{AttemptFailure, FailureClass};
pub use plan::{
    AttemptPlan, Candidate, Exhausted, MAX_COOLDOWN, PlanSettings, Selection, Step, cooldown,
};
