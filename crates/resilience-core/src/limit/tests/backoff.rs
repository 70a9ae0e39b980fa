//! [`StoreBackoff`] on a manual clock: skip, one trial, doubling, cap, recovery.

use std::time::Duration;

use crate::limit::{INITIAL_BACKOFF, MAX_BACKOFF, StoreBackoff};
use crate::{Clock, ManualClock};

#[test]
fn up_until_the_first_failure_which_starts_an_outage_once() {
    let clock = ManualClock::new();
    let mut backoff = StoreBackoff::default();
    assert!(backoff.is_available());
    assert!(backoff.should_try(clock.now()));
    assert!(
        backoff.failed(clock.now()),
        "the first failure starts an outage"
    );
    assert!(!backoff.is_available());
    assert!(
        !backoff.failed(clock.now()),
        "a concurrent failure is not a second outage"
    );
}

#[test]
fn skips_the_store_for_the_back_off_then_lets_one_call_try() {
    let clock = ManualClock::new();
    let mut backoff = StoreBackoff::default();
    backoff.failed(clock.now());
    clock.advance(INITIAL_BACKOFF - Duration::from_millis(1));
    assert!(!backoff.should_try(clock.now()));
    clock.advance(Duration::from_millis(1));
    assert!(backoff.should_try(clock.now()));
    backoff.trying(clock.now());
    assert!(!backoff.should_try(clock.now()), "one trial at a time");
}

#[test]
fn failed_trials_double_the_back_off_up_to_the_cap() {
    let clock = ManualClock::new();
    let mut backoff = StoreBackoff::default();
    backoff.failed(clock.now());
    let mut periods = Vec::new();
    let mut period = INITIAL_BACKOFF;
    for _ in 0..6 {
        clock.advance(period - Duration::from_millis(1));
        assert!(!backoff.should_try(clock.now()), "still inside {period:?}");
        clock.advance(Duration::from_millis(1));
        assert!(backoff.should_try(clock.now()));
        backoff.trying(clock.now());
        assert!(
            !backoff.failed(clock.now()),
            "a failed trial is not a new outage"
        );
        periods.push(period);
        period = (period * 2).min(MAX_BACKOFF);
    }
    let ms: Vec<u128> = periods.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [500, 1000, 2000, 4000, 5000, 5000]);
}

#[test]
fn a_stale_failure_does_not_lengthen_the_back_off() {
    let clock = ManualClock::new();
    let mut backoff = StoreBackoff::default();
    backoff.failed(clock.now());
    clock.advance(Duration::from_millis(100));
    backoff.failed(clock.now()); // began before the outage was known
    clock.advance(INITIAL_BACKOFF - Duration::from_millis(100));
    assert!(backoff.should_try(clock.now()));
}

#[test]
fn a_lost_trial_only_delays_the_next_by_one_period() {
    let clock = ManualClock::new();
    let mut backoff = StoreBackoff::default();
    backoff.failed(clock.now());
    clock.advance(INITIAL_BACKOFF);
    backoff.trying(clock.now()); // its request is cancelled: it never reports
    clock.advance(INITIAL_BACKOFF);
    assert!(backoff.should_try(clock.now()));
}

#[test]
fn a_success_ends_the_outage_once() {
    let clock = ManualClock::new();
    let mut backoff = StoreBackoff::default();
    assert!(!backoff.succeeded(), "no outage to end");
    backoff.failed(clock.now());
    clock.advance(INITIAL_BACKOFF);
    backoff.trying(clock.now());
    assert!(backoff.succeeded());
    assert!(backoff.is_available());
    assert!(backoff.should_try(clock.now()));
    assert!(!backoff.succeeded());
    // The next outage starts from the initial period again.
    backoff.failed(clock.now());
    clock.advance(INITIAL_BACKOFF);
    assert!(backoff.should_try(clock.now()));
}
