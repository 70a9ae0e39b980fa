//! Retries: how often, how long apart, and how many the system can afford.
//!
//! - [`policy`]: [`RetryPolicy`], attempts and exponential backoff with full jitter and a cap.
//! - [`budget`]: [`RetryBudget`], retries bounded by a fraction of recent requests plus a
//!   floor, over a rolling window.
//!
//! The loop that uses both is [`crate::policy::AttemptPlan`].

pub mod budget;
pub mod policy;

#[cfg(test)]
mod tests;

pub use budget::{BudgetConfig, BudgetSnapshot, RetryBudget};
pub use policy::RetryPolicy;
