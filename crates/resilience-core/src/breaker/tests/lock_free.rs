//! The shared breaker's lock-free path (successes counted without the mutex, in the counts
//! and the window) and concurrent use.

use std::time::Duration;

use super::support::{config, shared};
use crate::breaker::{Breaker, BreakerConfig, Outcome, StateKind};
use crate::clock::ManualClock;

#[test]
fn lock_free_successes_are_counted_and_still_reset_a_failure_run() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..100 {
        breaker.try_acquire().unwrap().success();
    }
    assert_eq!(breaker.snapshot().counters.successes, 100);
    // fail, fail, succeed, fail, fail: never three in a row, so it stays CLOSED.
    for outcome in [
        Outcome::Failure,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Failure,
        Outcome::Failure,
    ] {
        breaker.try_acquire().unwrap().record(outcome);
    }
    let snap = breaker.snapshot();
    assert_eq!(snap.state, StateKind::Closed);
    assert_eq!(snap.consecutive_failures, 2);
    assert_eq!((snap.counters.successes, snap.counters.failures), (101, 4));
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), StateKind::Open);
}

#[test]
fn concurrent_calls_lose_no_count() {
    let clock = ManualClock::new();
    let breaker = Breaker::new(
        "shared",
        BreakerConfig {
            failure_threshold: 1_000_000,
            ..config()
        },
        clock,
    )
    .unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let breaker = &breaker;
            scope.spawn(move || {
                for i in 0..5_000 {
                    let guard = breaker.try_acquire().unwrap();
                    match (i + t) % 10 {
                        0 => guard.failure(),
                        1 => guard.ignore(),
                        _ => guard.success(),
                    }
                }
            });
        }
    });
    let c = breaker.snapshot().counters;
    assert_eq!(c.successes + c.failures + c.ignored, 20_000);
    assert_eq!((c.failures, c.ignored), (2_000, 2_000));
    assert_eq!(breaker.snapshot().in_flight, 0);
}

#[test]
fn lock_free_successes_still_make_up_the_window_rates() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..999 {
        breaker.try_acquire().unwrap().success();
    }
    breaker.try_acquire().unwrap().failure();
    let window = breaker.snapshot().window;
    assert_eq!((window.calls, window.failures), (1000, 1));
    assert!((window.failure_rate - 0.001).abs() < 1e-9, "{window:?}");
}

#[test]
fn lock_free_successes_age_out_of_the_window_on_time() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..5 {
        breaker.try_acquire().unwrap().success();
    }
    clock.advance(config().window + Duration::from_secs(1));
    breaker.try_acquire().unwrap().success();
    assert_eq!(
        breaker.snapshot().window.calls,
        1,
        "the five old successes left the window"
    );
    assert_eq!(breaker.snapshot().counters.successes, 6);
}

#[test]
fn in_flight_returns_to_zero_through_racing_transitions() {
    let breaker = Breaker::new(
        "racy",
        BreakerConfig {
            failure_threshold: 2,
            recovery_timeout: Duration::from_millis(1),
            half_open_max_calls: 4,
            success_threshold: 1,
            ..BreakerConfig::default()
        },
        crate::SystemClock::shared(),
    )
    .unwrap();
    std::thread::scope(|scope| {
        for t in 0..3 {
            let breaker = &breaker;
            scope.spawn(move || {
                for i in 0..20_000 {
                    if let Ok(guard) = breaker.try_acquire() {
                        if (i + t) % 7 == 0 {
                            guard.failure()
                        } else {
                            guard.success()
                        }
                    }
                }
            });
        }
        let breaker = &breaker;
        scope.spawn(move || {
            for _ in 0..2_000 {
                breaker.reset();
                std::thread::yield_now();
            }
        });
    });
    assert_eq!(breaker.snapshot().in_flight, 0);
}
