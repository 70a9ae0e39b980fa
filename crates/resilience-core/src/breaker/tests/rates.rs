//! Failure and slow-call rates over the rolling window.

use std::time::Duration;

use super::support::{Machine, config};
use crate::breaker::{BreakerConfig, Outcome, StateKind, TransitionReason};

fn rate_config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 0,
        failure_rate_threshold: Some(0.5),
        minimum_calls: 10,
        window: Duration::from_secs(10),
        ..config()
    }
}

#[test]
fn failure_rate_waits_for_the_minimum_volume() {
    let mut m = Machine::new(rate_config());
    for _ in 0..9 {
        assert_eq!(m.fail(), None, "below the minimum number of calls");
    }
    let t = m.fail().expect("10th call reaches the minimum at 100 %");
    assert_eq!(t.reason, TransitionReason::FailureRate { rate: 1.0 });
}

#[test]
fn failure_rate_opens_exactly_at_the_threshold() {
    let mut m = Machine::new(rate_config());
    for _ in 0..5 {
        m.succeed();
    }
    for _ in 0..4 {
        m.fail();
    }
    assert_eq!(m.kind(), StateKind::Closed, "9 calls: below the minimum");
    let t = m.fail().expect("5 of 10 = 50 %");
    assert_eq!(t.reason, TransitionReason::FailureRate { rate: 0.5 });
}

#[test]
fn failure_rate_below_the_threshold_stays_closed() {
    let mut m = Machine::new(rate_config());
    for _ in 0..6 {
        m.succeed();
    }
    for _ in 0..4 {
        m.fail();
    }
    assert_eq!(m.kind(), StateKind::Closed);
    let stats = m.cb.window_stats(m.now);
    assert_eq!((stats.calls, stats.failures), (10, 4));
    assert!((stats.failure_rate - 0.4).abs() < 1e-9);
}

#[test]
fn failures_age_out_of_the_window() {
    let mut m = Machine::new(rate_config());
    for _ in 0..8 {
        m.fail();
    }
    m.advance(Duration::from_secs(11));
    for _ in 0..9 {
        m.succeed();
    }
    assert_eq!(m.fail(), None, "the old failures left the window: 1 of 10");
    assert_eq!(m.cb.window_stats(m.now).failures, 1);
}

#[test]
fn slow_call_rate_opens_it() {
    let mut m = Machine::new(BreakerConfig {
        failure_threshold: 0,
        slow_call_rate_threshold: Some(0.8),
        slow_call_duration: Duration::from_secs(2),
        minimum_calls: 5,
        ..config()
    });
    for _ in 0..3 {
        m.call(Outcome::Success, Duration::from_secs(2));
    }
    m.call(Outcome::Success, Duration::from_millis(1999));
    let t = m
        .call(Outcome::Success, Duration::from_secs(3))
        .expect("4 of 5 slow = 80 %");
    assert_eq!(t.reason, TransitionReason::SlowCallRate { rate: 0.8 });
    assert_eq!(m.cb.counters().slow, 4);
}
