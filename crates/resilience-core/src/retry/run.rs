//! A generic retry loop for callers whose attempts are interchangeable (the gateway's
//! request path has its own, which also changes instance between attempts).

use std::time::Duration;

use super::budget::RetryBudget;
use super::policy::RetryPolicy;

/// What the caller's classifier says about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Not worth retrying (a client error, or a non-idempotent failure).
    Stop,
    /// Retry after the policy's backoff.
    Retry,
    /// Retry, but not before this long (an upstream's `Retry-After`), still capped by the
    /// policy's `max_delay`.
    RetryAfter(Duration),
}

/// Runs `attempt` (given the 0-based attempt number) until it succeeds, the classifier says
/// stop, the policy runs out of attempts or the budget out of retries; returns the last
/// result. Deposits once into `budget`, withdraws for each retry. Waits with
/// `tokio::time::sleep`, so paused-time tests run it instantly.
pub async fn retry<T, E, Fut>(
    policy: &RetryPolicy,
    budget: Option<&RetryBudget>,
    mut attempt: impl FnMut(u32) -> Fut,
    classify: impl Fn(&E) -> RetryDecision,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    if let Some(budget) = budget {
        budget.deposit();
    }
    let mut made = 0;
    loop {
        let error = match attempt(made).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        made += 1;
        let wait = match classify(&error) {
            RetryDecision::Stop => return Err(error),
            RetryDecision::Retry => policy.backoff(made - 1),
            RetryDecision::RetryAfter(at_least) => at_least.min(policy.max_delay),
        };
        if !policy.allows_another(made) || budget.is_some_and(|b| !b.try_withdraw()) {
            return Err(error);
        }
        tokio::time::sleep(wait).await;
    }
}
