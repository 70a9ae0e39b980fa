//! Re-opening backoff: growing OPEN periods with jitter, up to a cap.

use std::time::Duration;

use super::support::{Machine, config};
use crate::breaker::{BreakerConfig, BreakerState, Outcome, ReopenBackoff};

fn backoff_config(jitter: f64) -> BreakerConfig {
    BreakerConfig {
        recovery_timeout: Duration::from_secs(10),
        half_open_max_calls: 1,
        success_threshold: 1,
        reopen_backoff: Some(ReopenBackoff {
            multiplier: 2.0,
            max: Duration::from_secs(60),
            jitter,
        }),
        ..config()
    }
}

fn open_until(m: &Machine) -> Duration {
    match m.cb.state() {
        BreakerState::Open { until: Some(until) } => until - m.now,
        other => panic!("expected a timed OPEN, got {other:?}"),
    }
}

#[test]
fn repeated_reopening_backs_off_up_to_the_cap() {
    let mut m = Machine::new(backoff_config(0.0));
    m.open_it();
    let mut periods = vec![open_until(&m)];
    for _ in 0..4 {
        m.advance(open_until(&m));
        m.call(Outcome::Failure, Duration::ZERO);
        periods.push(open_until(&m));
    }
    let secs: Vec<u64> = periods.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, vec![10, 20, 40, 60, 60]);
    // Closing forgets the backoff.
    m.advance(open_until(&m));
    m.call(Outcome::Success, Duration::ZERO);
    assert_eq!(m.cb.reopens(), 0);
    m.open_it();
    assert_eq!(open_until(&m), Duration::from_secs(10));
}

#[test]
fn backoff_jitter_stays_within_its_bounds() {
    for _ in 0..50 {
        let mut m = Machine::new(backoff_config(0.5));
        m.open_it();
        m.advance(open_until(&m));
        m.call(Outcome::Failure, Duration::ZERO);
        let period = open_until(&m);
        assert!(period >= Duration::from_secs(10), "{period:?}");
        assert!(period <= Duration::from_secs(20), "{period:?}");
    }
}

#[test]
fn open_period_formula() {
    let c = backoff_config(0.5);
    assert_eq!(
        c.open_period(0, 0.9),
        Duration::from_secs(10),
        "no jitter on a first open"
    );
    assert_eq!(c.open_period(1, 0.0), Duration::from_secs(20));
    assert_eq!(c.open_period(1, 1.0), Duration::from_secs(10));
    assert_eq!(c.open_period(30, 0.0), Duration::from_secs(60));
    assert_eq!(
        config().open_period(5, 0.5),
        Duration::from_secs(30),
        "off by default"
    );
}
