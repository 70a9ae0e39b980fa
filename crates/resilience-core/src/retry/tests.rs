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
