use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::ManualClock;

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
    }
}

// ---- policy ----

#[test]
fn ceiling_doubles_up_to_the_cap() {
    let p = policy();
    let ceilings: Vec<u128> = (0..6).map(|r| p.ceiling(r).as_millis()).collect();
    assert_eq!(ceilings, vec![100, 200, 400, 500, 500, 500]);
    assert_eq!(
        p.ceiling(u32::MAX),
        Duration::from_millis(500),
        "no overflow"
    );
}

#[test]
fn full_jitter_spans_zero_to_the_ceiling() {
    let p = policy();
    assert_eq!(p.backoff_at(2, 0.0), Duration::ZERO);
    assert_eq!(p.backoff_at(2, 0.5), Duration::from_millis(200));
    assert_eq!(p.backoff_at(2, 1.0), Duration::from_millis(400));
    assert_eq!(
        p.backoff_at(2, 7.0),
        Duration::from_millis(400),
        "draw clamped"
    );
    assert_eq!(p.backoff_at(2, f64::NAN), Duration::ZERO, "no panic on NaN");
    assert_eq!(p.backoff_at(2, f64::NEG_INFINITY), Duration::ZERO);
}

proptest! {
    #[test]
    fn backoff_never_exceeds_its_ceiling_or_the_cap(retry in 0u32..64) {
        let p = policy();
        let wait = p.backoff(retry);
        prop_assert!(wait <= p.ceiling(retry));
        prop_assert!(wait <= p.max_delay);
    }
}

#[test]
fn attempts_are_bounded() {
    let p = policy();
    assert!(p.allows_another(3));
    assert!(!p.allows_another(4));
    assert!(!RetryPolicy::never().allows_another(1));
}

#[test]
fn policy_validation_names_the_setting() {
    let zero = RetryPolicy {
        max_attempts: 0,
        ..policy()
    };
    assert!(
        zero.validate()
            .unwrap_err()
            .to_string()
            .contains("retry.max_attempts")
    );
    let inverted = RetryPolicy {
        max_delay: Duration::from_millis(1),
        ..policy()
    };
    assert!(
        inverted
            .validate()
            .unwrap_err()
            .to_string()
            .contains("retry.max_delay")
    );
    assert!(RetryPolicy::default().validate().is_ok());
}

// ---- budget ----

fn budget(ratio: f64, min_per_sec: u32) -> (Arc<ManualClock>, RetryBudget) {
    let clock = ManualClock::new();
    let config = BudgetConfig {
        ratio,
        min_per_sec,
        window: Duration::from_secs(10),
    };
    let budget = RetryBudget::new(config, clock.clone()).unwrap();
    (clock, budget)
}

#[test]
fn budget_allows_the_floor_with_no_traffic() {
    let (_, b) = budget(0.2, 1);
    for i in 0..10 {
        assert!(b.try_withdraw(), "retry {i} within the floor of 1/s × 10 s");
    }
    assert!(!b.try_withdraw(), "the 11th is over the floor");
}

#[test]
fn budget_grows_with_requests() {
    let (_, b) = budget(0.2, 0);
    assert!(!b.try_withdraw(), "no requests, no floor: nothing to spend");
    for _ in 0..50 {
        b.deposit();
    }
    let granted = (0..100).filter(|_| b.try_withdraw()).count();
    assert_eq!(granted, 10, "20 % of 50 requests");
    let snap = b.snapshot();
    assert_eq!((snap.requests, snap.retries, snap.allowed), (50, 10, 10));
}

#[test]
fn an_exhausted_budget_refills_as_the_window_moves() {
    let (clock, b) = budget(0.5, 0);
    for _ in 0..4 {
        b.deposit();
    }
    assert!(b.try_withdraw());
    assert!(b.try_withdraw());
    assert!(!b.try_withdraw(), "exhausted");
    clock.advance(Duration::from_secs(11));
    assert!(!b.try_withdraw(), "old requests left the window too");
    for _ in 0..2 {
        b.deposit();
    }
    assert!(b.try_withdraw(), "new requests bring new retries");
    assert!(!b.try_withdraw());
}

#[test]
fn retries_can_never_exceed_ratio_plus_floor_under_an_outage() {
    // An outage: every request fails and wants to retry as often as it can.
    let (_, b) = budget(0.2, 1);
    let mut retries = 0;
    for _ in 0..1000 {
        b.deposit();
        for _ in 0..3 {
            if b.try_withdraw() {
                retries += 1;
            }
        }
    }
    assert_eq!(retries, 210, "20 % of 1000 plus 10 of floor, not 3000");
}

#[test]
fn budget_validation_names_the_setting() {
    let clock = ManualClock::new();
    let bad = BudgetConfig {
        ratio: -1.0,
        ..BudgetConfig::default()
    };
    let err = RetryBudget::new(bad, clock.clone()).unwrap_err();
    assert!(err.to_string().contains("retry_budget.ratio"));
    let short = BudgetConfig {
        window: Duration::from_millis(10),
        ..BudgetConfig::default()
    };
    assert!(
        RetryBudget::new(short, clock)
            .unwrap_err()
            .to_string()
            .contains("retry_budget.window")
    );
}

// ---- the retry loop ----

#[tokio::test(start_paused = true)]
async fn retry_returns_the_first_success() {
    let calls = Cell::new(0);
    let result: Result<u32, &str> = retry(
        &policy(),
        None,
        |n| {
            calls.set(calls.get() + 1);
            async move { if n < 2 { Err("boom") } else { Ok(n) } }
        },
        |_| RetryDecision::Retry,
    )
    .await;
    assert_eq!(result, Ok(2));
    assert_eq!(calls.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_attempts_with_the_last_error() {
    let calls = Cell::new(0);
    let result: Result<(), u32> = retry(
        &policy(),
        None,
        |n| {
            calls.set(calls.get() + 1);
            async move { Err(n) }
        },
        |_| RetryDecision::Retry,
    )
    .await;
    assert_eq!(result, Err(3));
    assert_eq!(calls.get(), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_stops_at_once_on_a_non_retryable_error() {
    let calls = Cell::new(0);
    let result: Result<(), u16> = retry(
        &policy(),
        None,
        |_| {
            calls.set(calls.get() + 1);
            async { Err(400) }
        },
        |status| {
            if *status >= 500 {
                RetryDecision::Retry
            } else {
                RetryDecision::Stop
            }
        },
    )
    .await;
    assert_eq!(result, Err(400));
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_honours_retry_after_capped_by_the_policy() {
    let start = tokio::time::Instant::now();
    let result: Result<(), &str> = retry(
        &RetryPolicy {
            max_attempts: 2,
            ..policy()
        },
        None,
        |_| async { Err("429") },
        |_| RetryDecision::RetryAfter(Duration::from_secs(60)),
    )
    .await;
    assert!(result.is_err());
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(500),
        "waited the cap, not 60 s"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_waits_within_the_backoff_bounds() {
    let start = tokio::time::Instant::now();
    let _: Result<(), ()> = retry(
        &policy(),
        None,
        |_| async { Err(()) },
        |_| RetryDecision::Retry,
    )
    .await;
    // Three waits, each at most its ceiling: 100 + 200 + 400 ms.
    assert!(
        start.elapsed() <= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() > Duration::ZERO,
        "it did wait between attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_stops_when_the_budget_is_spent() {
    let (_, b) = budget(0.0, 0);
    let calls = Cell::new(0);
    let result: Result<(), ()> = retry(
        &policy(),
        Some(&b),
        |_| {
            calls.set(calls.get() + 1);
            async { Err(()) }
        },
        |_| RetryDecision::Retry,
    )
    .await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 1, "no budget: the first attempt only");
    assert_eq!(b.snapshot().requests, 1, "the request was deposited");
}
