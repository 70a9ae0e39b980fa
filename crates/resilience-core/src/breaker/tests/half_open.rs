//! HALF_OPEN: limited probes, closing on enough successes, re-opening on one failure, and
//! outcomes of calls let through before a transition.

use std::time::Duration;

use super::support::{MS, Machine, config};
use crate::breaker::{BreakerState, Outcome, Rejection, StateKind, TransitionReason};

fn half_open() -> Machine {
    let mut m = Machine::new(config());
    m.open_it();
    m.advance(Duration::from_secs(30));
    m
}

#[test]
fn half_open_limits_concurrent_probes() {
    let mut m = half_open();
    let a = m.acquire().expect("first probe");
    let b = m.acquire().expect("second probe");
    assert_eq!(m.acquire(), Err(Rejection::ProbeLimit));
    assert_eq!(m.cb.counters().rejected_probe_limit, 1);
    // A finished probe frees its slot.
    m.cb.record(m.now, a, Outcome::Success);
    let c = m.acquire().expect("slot freed");
    m.cb.record(m.now, b, Outcome::Ignored);
    m.cb.record(m.now, c, Outcome::Ignored);
}

#[test]
fn enough_probe_successes_close_it() {
    let mut m = half_open();
    assert_eq!(m.succeed(), None, "one success is not enough");
    assert_eq!(m.kind(), StateKind::HalfOpen);
    let t = m.succeed().expect("second success closes");
    assert_eq!((t.from, t.to), (StateKind::HalfOpen, StateKind::Closed));
    assert_eq!(t.reason, TransitionReason::ProbesSucceeded { count: 2 });
    assert_eq!(m.cb.consecutive_failures(), 0);
    assert_eq!(
        m.cb.window_stats(m.now).calls,
        0,
        "closing starts a fresh window"
    );
}

#[test]
fn one_probe_failure_reopens_it() {
    let mut m = half_open();
    m.succeed();
    let t = m.fail().expect("a failed probe re-opens");
    assert_eq!((t.from, t.to), (StateKind::HalfOpen, StateKind::Open));
    assert_eq!(t.reason, TransitionReason::ProbeFailed);
    assert_eq!(m.cb.reopens(), 1);
    m.advance(Duration::from_secs(29));
    assert!(
        m.acquire().is_err(),
        "without backoff the period is the recovery timeout"
    );
    m.advance(Duration::from_secs(1));
    assert!(m.acquire().is_ok());
}

#[test]
fn an_ignored_probe_frees_its_slot_without_counting() {
    let mut m = half_open();
    assert_eq!(m.call(Outcome::Ignored, MS), None);
    assert!(matches!(
        m.cb.state(),
        BreakerState::HalfOpen {
            probes: 0,
            successes: 0
        }
    ));
}

#[test]
fn a_late_outcome_from_before_the_transition_does_not_move_the_state() {
    let mut m = Machine::new(config());
    let straggler = m.acquire().unwrap();
    m.open_it();
    m.advance(Duration::from_secs(30));
    m.succeed();
    m.succeed();
    assert_eq!(m.kind(), StateKind::Closed);
    // The call let through before the breaker opened fails now: counted, but harmless.
    assert_eq!(m.cb.record(m.now, straggler, Outcome::Failure), None);
    assert_eq!(m.cb.consecutive_failures(), 0);
    assert_eq!(m.cb.counters().failures, 4);
    assert_eq!(m.cb.in_flight(), 0);
}
