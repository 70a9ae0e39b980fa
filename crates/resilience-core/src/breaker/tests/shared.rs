//! The shared breaker: hooks, guards (borrowed, owned, dropped), snapshots, `call`, and
//! outcomes of calls let through before a transition.

use std::sync::Arc;
use std::time::Duration;

use super::support::{config, shared};
use crate::breaker::{Breaker, BreakerConfig, BreakerGuard, Outcome, Rejection, StateKind};
use crate::clock::ManualClock;

#[test]
fn shared_breaker_tells_its_hooks_of_every_transition() {
    let clock = ManualClock::new();
    let (breaker, seen) = shared(&clock);
    for _ in 0..3 {
        breaker.try_acquire().unwrap().failure();
    }
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        breaker.state(),
        StateKind::HalfOpen,
        "read, no request needed"
    );
    breaker.try_acquire().unwrap().success();
    breaker.try_acquire().unwrap().success();
    breaker.force_open();
    breaker.reset();
    let seen = seen.lock().unwrap().clone();
    let expected: Vec<(String, StateKind, StateKind)> = [
        (StateKind::Closed, StateKind::Open),
        (StateKind::Open, StateKind::HalfOpen),
        (StateKind::HalfOpen, StateKind::Closed),
        (StateKind::Closed, StateKind::Open),
        (StateKind::Open, StateKind::Closed),
    ]
    .into_iter()
    .map(|(a, b)| ("pool".to_owned(), a, b))
    .collect();
    assert_eq!(seen, expected);
    let history = breaker.history();
    assert_eq!(history.len(), 5);
    assert!(history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
}

#[test]
fn a_dropped_guard_counts_as_ignored() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..10 {
        drop(breaker.try_acquire().unwrap());
    }
    let snap = breaker.snapshot();
    assert_eq!(snap.counters.ignored, 10);
    assert_eq!(snap.in_flight, 0);
    assert_eq!(snap.state, StateKind::Closed);
}

#[test]
fn snapshot_reports_state_time_left_and_counts() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..3 {
        breaker.try_acquire().unwrap().failure();
    }
    clock.advance(Duration::from_secs(12));
    let snap = breaker.snapshot();
    assert_eq!(snap.state, StateKind::Open);
    assert_eq!(snap.retry_after_ms, Some(18_000));
    assert_eq!(snap.counters.failures, 3);
    assert!(!snap.forced_open);
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["state"], "OPEN");
    assert_eq!(json["name"], "pool");
    assert!(!breaker.is_call_permitted());
    clock.advance(Duration::from_secs(18));
    assert!(
        breaker.is_call_permitted(),
        "elapsed: a probe would be let through"
    );
    assert_eq!(breaker.snapshot().state, StateKind::HalfOpen);
}

#[tokio::test]
async fn call_runs_through_the_breaker_and_classifies() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    let classify = |r: &Result<u32, u16>| match r {
        Ok(_) => Outcome::Success,
        Err(status) if *status >= 500 => Outcome::Failure,
        Err(_) => Outcome::Ignored,
    };
    assert_eq!(breaker.call(|| async { Ok(7) }, classify).await, Ok(Ok(7)));
    for _ in 0..10 {
        let r = breaker
            .call(|| async { Err::<u32, u16>(422) }, classify)
            .await;
        assert_eq!(r, Ok(Err(422)));
    }
    assert_eq!(
        breaker.state(),
        StateKind::Closed,
        "client errors never open it"
    );
    for _ in 0..3 {
        let _ = breaker
            .call(|| async { Err::<u32, u16>(503) }, classify)
            .await;
    }
    let mut ran = false;
    let r = breaker
        .call(
            || {
                ran = true;
                async { Ok(1) }
            },
            classify,
        )
        .await;
    assert!(matches!(r, Err(Rejection::BreakerOpen { .. })));
    assert!(!ran, "an open breaker does not make the call");
}

#[test]
fn a_slow_success_is_counted_as_slow_on_the_shared_breaker() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    let guard = breaker.try_acquire().unwrap();
    clock.advance(config().slow_call_duration);
    guard.success();
    let counters = breaker.snapshot().counters;
    assert_eq!((counters.successes, counters.slow), (1, 1));
}

#[test]
fn a_success_admitted_before_the_breaker_opened_cannot_close_or_count_against_it() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    let straggler = breaker.try_acquire().unwrap();
    for _ in 0..3 {
        breaker.try_acquire().unwrap().failure();
    }
    straggler.success();
    let snap = breaker.snapshot();
    assert_eq!(snap.state, StateKind::Open);
    assert_eq!(snap.counters.successes, 1, "counted all the same");
}

#[test]
fn shared_breaker_rejects_an_invalid_config() {
    let bad = BreakerConfig {
        success_threshold: 0,
        ..config()
    };
    let err = Breaker::new("x", bad, ManualClock::new()).unwrap_err();
    assert!(
        err.to_string().contains("breaker.success_threshold"),
        "{err}"
    );
}

#[test]
fn an_owned_guard_outlives_its_borrow_and_reports_like_a_borrowed_one() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    let breaker = Arc::new(breaker);
    let guards: Vec<BreakerGuard<'static>> = (0..3)
        .map(|_| breaker.try_acquire_owned().unwrap())
        .collect();
    let moved = std::thread::spawn(move || {
        for guard in guards {
            guard.failure();
        }
    });
    moved.join().unwrap();
    assert_eq!(breaker.state(), StateKind::Open);
    assert!(
        breaker.try_acquire_owned().is_err(),
        "OPEN refuses owned guards too"
    );
    clock.advance(Duration::from_secs(30));
    drop(breaker.try_acquire_owned().unwrap());
    assert_eq!(
        breaker.state(),
        StateKind::HalfOpen,
        "a dropped probe is ignored and frees its slot"
    );
}
