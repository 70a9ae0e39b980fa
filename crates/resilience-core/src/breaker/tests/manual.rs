//! An operator's reset and forced open.

use std::time::Duration;

use super::support::{Machine, config};
use crate::breaker::{Rejection, StateKind, TransitionReason};

#[test]
fn reset_closes_an_open_breaker() {
    let mut m = Machine::new(config());
    m.open_it();
    let t = m.cb.reset(m.now).expect("reset transitions");
    assert_eq!(
        (t.from, t.to, t.reason),
        (
            StateKind::Open,
            StateKind::Closed,
            TransitionReason::ManualReset
        )
    );
    assert!(m.acquire().is_ok());
}

#[test]
fn reset_of_a_closed_breaker_clears_counts_without_a_transition() {
    let mut m = Machine::new(config());
    m.fail();
    m.fail();
    assert_eq!(m.cb.reset(m.now), None);
    assert_eq!(m.cb.consecutive_failures(), 0);
    m.fail();
    m.fail();
    assert_eq!(m.kind(), StateKind::Closed);
}

#[test]
fn force_open_holds_until_reset() {
    let mut m = Machine::new(config());
    let t = m.cb.force_open(m.now).expect("forcing transitions");
    assert_eq!(t.reason, TransitionReason::ForcedOpen);
    assert_eq!(
        m.cb.force_open(m.now),
        None,
        "forcing twice is one transition"
    );
    m.advance(Duration::from_secs(3600));
    assert_eq!(m.kind(), StateKind::Open);
    assert_eq!(
        m.acquire(),
        Err(Rejection::BreakerOpen { retry_after: None })
    );
    m.cb.reset(m.now);
    assert_eq!(m.kind(), StateKind::Closed);
}
