//! CLOSED → OPEN on consecutive failures; ignored outcomes never count.

use super::support::{MS, Machine, config};
use crate::breaker::{BreakerCounters, Outcome, StateKind, TransitionReason};

#[test]
fn starts_closed() {
    let m = Machine::new(config());
    assert_eq!(m.kind(), StateKind::Closed);
    assert_eq!(m.cb.counters(), BreakerCounters::default());
}

#[test]
fn opens_exactly_at_the_failure_threshold() {
    let mut m = Machine::new(config());
    assert_eq!(m.fail(), None);
    assert_eq!(m.fail(), None);
    assert_eq!(m.kind(), StateKind::Closed, "one short of the threshold");
    let t = m.fail().expect("third failure opens");
    assert_eq!((t.from, t.to), (StateKind::Closed, StateKind::Open));
    assert_eq!(t.reason, TransitionReason::ConsecutiveFailures { count: 3 });
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let mut m = Machine::new(config());
    m.fail();
    m.fail();
    m.succeed();
    assert_eq!(m.cb.consecutive_failures(), 0);
    m.fail();
    m.fail();
    assert_eq!(m.kind(), StateKind::Closed);
}

#[test]
fn ignored_outcomes_never_count() {
    let mut m = Machine::new(config());
    for _ in 0..50 {
        assert_eq!(m.call(Outcome::Ignored, MS), None);
    }
    assert_eq!(m.kind(), StateKind::Closed);
    assert_eq!(m.cb.counters().ignored, 50);
    assert_eq!(m.cb.window_stats(m.now).calls, 0);
    // Ignored calls between failures neither reset nor add to the run of failures.
    m.fail();
    m.call(Outcome::Ignored, MS);
    m.fail();
    assert_eq!(m.cb.consecutive_failures(), 2);
}
