//! The bulkhead: a cap on calls in flight, rejected with its own reason.

use super::support::{Machine, config};
use crate::breaker::{BreakerConfig, Outcome, Rejection, StateKind};

#[test]
fn bulkhead_rejects_with_its_own_reason() {
    let mut m = Machine::new(BreakerConfig {
        max_concurrent_calls: Some(2),
        ..config()
    });
    let a = m.acquire().unwrap();
    let _b = m.acquire().unwrap();
    assert_eq!(m.acquire(), Err(Rejection::BulkheadFull));
    assert_eq!(m.cb.counters().rejected_bulkhead, 1);
    assert_eq!(
        m.kind(),
        StateKind::Closed,
        "a full bulkhead is not a failure"
    );
    m.cb.record(m.now, a, Outcome::Success);
    assert!(m.acquire().is_ok());
}
