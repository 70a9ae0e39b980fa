//! OPEN: calls rejected for exactly the recovery timeout, then HALF_OPEN.

use std::time::Duration;

use super::support::{MS, Machine, config};
use crate::breaker::{BreakerState, Rejection, StateKind, TransitionReason};

#[test]
fn open_rejects_without_a_call_and_says_how_long() {
    let mut m = Machine::new(config());
    m.open_it();
    m.advance(Duration::from_secs(10));
    match m.acquire() {
        Err(Rejection::BreakerOpen { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(20)));
        }
        other => panic!("expected BreakerOpen, got {other:?}"),
    }
    assert_eq!(m.cb.counters().rejected_open, 1);
    assert_eq!(m.cb.in_flight(), 0);
}

#[test]
fn open_lasts_exactly_the_recovery_timeout() {
    let mut m = Machine::new(config());
    m.open_it();
    m.advance(Duration::from_secs(30) - MS);
    assert!(m.acquire().is_err(), "one millisecond early");
    assert_eq!(m.kind(), StateKind::Open);
    m.advance(MS);
    assert_eq!(
        m.kind(),
        StateKind::HalfOpen,
        "reads HALF_OPEN as soon as the timeout elapsed"
    );
    let (permit, t) = m.cb.try_acquire(m.now);
    assert!(permit.expect("a probe is let through").is_probe());
    let t = t.expect("acquiring applied the timed transition");
    assert_eq!((t.from, t.to), (StateKind::Open, StateKind::HalfOpen));
    assert_eq!(t.reason, TransitionReason::RecoveryTimeoutElapsed);
}

#[test]
fn poll_applies_the_timed_transition_once() {
    let mut m = Machine::new(config());
    m.open_it();
    m.advance(Duration::from_secs(31));
    assert!(m.cb.poll(m.now).is_some());
    assert!(m.cb.poll(m.now).is_none());
    assert!(matches!(
        m.cb.state(),
        BreakerState::HalfOpen {
            probes: 0,
            successes: 0
        }
    ));
}
