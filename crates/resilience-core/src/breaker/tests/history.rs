//! The transition history, sequence numbers and how states are written.

use std::time::Duration;

use super::support::{Machine, config};
use crate::breaker::{StateKind, state};

#[test]
fn history_keeps_the_last_transitions_in_order() {
    let mut m = Machine::new(config());
    m.open_it();
    m.advance(Duration::from_secs(30));
    m.succeed();
    m.succeed();
    let kinds: Vec<(StateKind, StateKind)> = m.cb.history().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        kinds,
        vec![
            (StateKind::Closed, StateKind::Open),
            (StateKind::Open, StateKind::HalfOpen),
            (StateKind::HalfOpen, StateKind::Closed),
        ]
    );
    for _ in 0..100 {
        m.cb.force_open(m.now);
        m.cb.reset(m.now);
    }
    assert_eq!(m.cb.history().len(), state::HISTORY_LEN);
    assert_eq!(m.cb.counters().transitions, 203);
}

#[test]
fn transitions_carry_a_growing_sequence_number() {
    let mut m = Machine::new(config());
    let mut sequences = Vec::new();
    for _ in 0..3 {
        m.open_it();
        sequences.push(m.cb.history().last().unwrap().sequence);
        m.cb.reset(m.now);
        sequences.push(m.cb.history().last().unwrap().sequence);
    }
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequences:?}"
    );
}

#[test]
fn states_serialise_exactly() {
    let json =
        serde_json::to_string(&[StateKind::Closed, StateKind::Open, StateKind::HalfOpen]).unwrap();
    assert_eq!(json, r#"["CLOSED","OPEN","HALF_OPEN"]"#);
    assert_eq!(StateKind::HalfOpen.to_string(), "HALF_OPEN");
    assert_eq!(StateKind::Open.as_gauge(), 1);
}
