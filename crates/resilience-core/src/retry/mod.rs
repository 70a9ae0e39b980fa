//! Retries: how often, how long apart, and how many the system can afford.
//!
//! - [`policy`]: [`RetryPolicy`], attempts and exponential backoff with full jitter and a cap.
//! - [`budget`]: [`RetryBudget`], retries bounded by a fraction of recent requests plus a
//!   floor, over a rolling window.
//! - [`run`]: [`retry`], a generic retry loop using both, with a classifier that can stop or
//!   honour a `Retry-After`.

pub mod budget;
pub mod policy;
pub mod run;

#[cfg(test)]
mod tests;

pub use budget::{BudgetConfig, BudgetSnapshot, RetryBudget};
pub use policy::RetryPolicy;
pub use run::{RetryDecision, retry};
