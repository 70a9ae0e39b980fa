//! Properties over random call sequences: limits hold, transitions follow the diagram, and
//! the shared breaker agrees with the machine.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::support::config;
use crate::breaker::{
    Breaker, BreakerConfig, BreakerGuard, BreakerState, CircuitBreaker, Outcome, Permit, StateKind,
};
use crate::clock::{Clock, ManualClock};

#[derive(Debug, Clone)]
enum Step {
    Acquire,
    Finish(usize, u8),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Acquire),
        3 => (any::<usize>(), 0u8..3).prop_map(|(i, o)| Step::Finish(i, o)),
        1 => (0u64..40_000).prop_map(Step::Advance),
    ]
}

proptest! {
    /// Whatever happens, HALF_OPEN never has more probes running than permitted, the
    /// bulkhead is never exceeded, and in-flight accounting matches the permits held.
    #[test]
    fn never_more_probes_or_calls_than_permitted(steps in proptest::collection::vec(step(), 1..400)) {
        let cfg = BreakerConfig {
            failure_threshold: 2,
            half_open_max_calls: 2,
            success_threshold: 2,
            max_concurrent_calls: Some(5),
            recovery_timeout: Duration::from_secs(10),
            ..BreakerConfig::default()
        };
        let mut now = Instant::now();
        let mut cb = CircuitBreaker::new(cfg, now);
        let mut held: Vec<Permit> = Vec::new();
        for step in steps {
            match step {
                Step::Acquire => {
                    if let (Ok(p), _) = cb.try_acquire(now) { held.push(p); }
                }
                Step::Finish(i, o) if !held.is_empty() => {
                    let p = held.swap_remove(i % held.len());
                    let outcome = [Outcome::Success, Outcome::Failure, Outcome::Ignored][o as usize];
                    cb.record(now, p, outcome);
                }
                Step::Finish(..) => {}
                Step::Advance(ms) => now += Duration::from_millis(ms),
            }
            prop_assert_eq!(cb.in_flight() as usize, held.len());
            prop_assert!(held.len() <= 5);
            if let BreakerState::HalfOpen { probes, .. } = cb.state() {
                prop_assert!(probes <= 2);
                let current_probes = held.iter().filter(|p| p.is_probe()).count() as u32;
                prop_assert!(probes <= current_probes);
            }
        }
    }

    /// The state only changes along the edges of the state diagram.
    #[test]
    fn transitions_follow_the_diagram(steps in proptest::collection::vec(step(), 1..300)) {
        let mut now = Instant::now();
        let mut cb = CircuitBreaker::new(config(), now);
        let mut held: Vec<Permit> = Vec::new();
        for step in steps {
            let t = match step {
                Step::Acquire => {
                    let (p, t) = cb.try_acquire(now);
                    if let Ok(p) = p { held.push(p); }
                    t
                }
                Step::Finish(i, o) if !held.is_empty() => {
                    let p = held.swap_remove(i % held.len());
                    cb.record(now, p, [Outcome::Success, Outcome::Failure, Outcome::Ignored][o as usize])
                }
                Step::Finish(..) => None,
                Step::Advance(ms) => { now += Duration::from_millis(ms); None }
            };
            if let Some(t) = t {
                let allowed = matches!(
                    (t.from, t.to),
                    (StateKind::Closed, StateKind::Open)
                        | (StateKind::Open, StateKind::HalfOpen)
                        | (StateKind::HalfOpen, StateKind::Open)
                        | (StateKind::HalfOpen, StateKind::Closed)
                );
                prop_assert!(allowed, "illegal transition {:?}", t);
            }
        }
    }
}

proptest! {
    /// Run one after another, the shared breaker (with its lock-free path) and the pure
    /// machine agree on the state and on every counter.
    #[test]
    fn the_shared_breaker_behaves_like_the_machine(steps in proptest::collection::vec(step(), 1..300)) {
        let clock = ManualClock::new();
        let shared = Breaker::new("model", config(), clock.clone()).unwrap();
        let mut machine = CircuitBreaker::new(config(), clock.now());
        let mut held: Vec<(BreakerGuard<'_>, Permit)> = Vec::new();
        for step in steps {
            match step {
                Step::Acquire => {
                    let (expected, _) = machine.try_acquire(clock.now());
                    match (shared.try_acquire(), expected) {
                        (Ok(guard), Ok(permit)) => held.push((guard, permit)),
                        (Err(a), Err(b)) => prop_assert_eq!(a, b),
                        (a, b) => prop_assert!(false, "shared {:?} vs machine {:?}", a.map(|_| ()), b),
                    }
                }
                Step::Finish(i, o) if !held.is_empty() => {
                    let (guard, permit) = held.swap_remove(i % held.len());
                    let outcome = [Outcome::Success, Outcome::Failure, Outcome::Ignored][o as usize];
                    guard.record(outcome);
                    machine.record(clock.now(), permit, outcome);
                }
                Step::Finish(..) => {}
                Step::Advance(ms) => clock.advance(Duration::from_millis(ms)),
            }
            machine.poll(clock.now());
            let snap = shared.snapshot();
            prop_assert_eq!(snap.state, machine.state().kind());
            prop_assert_eq!(snap.consecutive_failures, machine.consecutive_failures());
            let (a, b) = (snap.counters, machine.counters());
            prop_assert_eq!(
                (a.successes, a.failures, a.ignored, a.slow, a.rejected_open, a.rejected_probe_limit, a.transitions),
                (b.successes, b.failures, b.ignored, b.slow, b.rejected_open, b.rejected_probe_limit, b.transitions)
            );
        }
    }
}
