use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};

const MS: Duration = Duration::from_millis(1);

fn config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        recovery_timeout: Duration::from_secs(30),
        half_open_max_calls: 2,
        success_threshold: 2,
        ..BreakerConfig::default()
    }
}

struct Machine {
    cb: CircuitBreaker,
    now: Instant,
}

impl Machine {
    fn new(config: BreakerConfig) -> Self {
        let now = Instant::now();
        Self {
            cb: CircuitBreaker::new(config, now),
            now,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn acquire(&mut self) -> Result<Permit, Rejection> {
        self.cb.try_acquire(self.now).0
    }

    /// One call that takes `took` and ends with `outcome`; panics if it was rejected.
    fn call(&mut self, outcome: Outcome, took: Duration) -> Option<Transition> {
        let permit = self.acquire().expect("call should be let through");
        self.now += took;
        self.cb.record(self.now, permit, outcome)
    }

    fn fail(&mut self) -> Option<Transition> {
        self.call(Outcome::Failure, MS)
    }

    fn succeed(&mut self) -> Option<Transition> {
        self.call(Outcome::Success, MS)
    }

    fn kind(&self) -> StateKind {
        self.cb.kind_at(self.now)
    }

    fn open_it(&mut self) {
        for _ in 0..self.cb.config().failure_threshold {
            self.fail();
        }
        assert_eq!(self.kind(), StateKind::Open);
    }
}

// ---- CLOSED → OPEN on consecutive failures ----

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

// ---- OPEN ----

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

// ---- HALF_OPEN ----

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

// ---- rates over the rolling window ----

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

// ---- bulkhead ----

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

// ---- manual control ----

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

// ---- reopen backoff ----

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

// ---- counters, history, config ----

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
fn states_serialise_exactly() {
    let json =
        serde_json::to_string(&[StateKind::Closed, StateKind::Open, StateKind::HalfOpen]).unwrap();
    assert_eq!(json, r#"["CLOSED","OPEN","HALF_OPEN"]"#);
    assert_eq!(StateKind::HalfOpen.to_string(), "HALF_OPEN");
    assert_eq!(StateKind::Open.as_gauge(), 1);
}

#[test]
fn validation_names_every_bad_setting() {
    let bad = BreakerConfig {
        failure_threshold: 0,
        failure_rate_threshold: Some(1.5),
        half_open_max_calls: 0,
        success_threshold: 0,
        recovery_timeout: Duration::ZERO,
        max_concurrent_calls: Some(0),
        reopen_backoff: Some(ReopenBackoff {
            multiplier: 0.5,
            max: Duration::ZERO,
            jitter: 1.0,
        }),
        ..BreakerConfig::default()
    };
    let text: Vec<String> = bad.problems().iter().map(ToString::to_string).collect();
    for setting in [
        "breaker.failure_rate_threshold",
        "breaker.recovery_timeout",
        "breaker.half_open_max_calls",
        "breaker.success_threshold",
        "breaker.max_concurrent_calls",
        "breaker.reopen_backoff.multiplier",
        "breaker.reopen_backoff.jitter",
    ] {
        assert!(
            text.iter().any(|t| t.contains(setting)),
            "{setting} missing from {text:?}"
        );
    }
    let short_cap = BreakerConfig {
        reopen_backoff: Some(ReopenBackoff {
            max: Duration::from_secs(1),
            ..ReopenBackoff::default()
        }),
        ..BreakerConfig::default()
    };
    let err = short_cap.validate().unwrap_err().to_string();
    assert!(err.contains("breaker.reopen_backoff.max"), "{err}");
    for (bad, setting) in [
        (
            BreakerConfig {
                window_buckets: 5_000,
                ..BreakerConfig::default()
            },
            "breaker.window_buckets",
        ),
        (
            BreakerConfig {
                slow_call_duration: Duration::ZERO,
                ..BreakerConfig::default()
            },
            "breaker.slow_call_duration",
        ),
        (
            BreakerConfig {
                recovery_timeout: Duration::MAX,
                ..BreakerConfig::default()
            },
            "breaker.recovery_timeout",
        ),
        (
            BreakerConfig {
                window: Duration::from_secs(86_401),
                ..BreakerConfig::default()
            },
            "breaker.window",
        ),
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains(setting), "{err}");
    }
    assert!(BreakerConfig::default().validate().is_ok());
    let never_opens = BreakerConfig {
        failure_threshold: 0,
        ..BreakerConfig::default()
    };
    assert!(never_opens.validate().is_err());
}

// ---- the shared breaker ----

type Seen = Arc<Mutex<Vec<(String, StateKind, StateKind)>>>;

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

fn shared(clock: &Arc<ManualClock>) -> (Breaker, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let hook: TransitionHook = Arc::new(move |name: &str, t: &Transition| {
        sink.lock().unwrap().push((name.to_owned(), t.from, t.to));
    });
    let breaker = Breaker::new("pool", config(), clock.clone())
        .unwrap()
        .with_hook(hook);
    (breaker, seen)
}

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
fn lock_free_successes_are_counted_and_still_reset_a_failure_run() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..100 {
        breaker.try_acquire().unwrap().success();
    }
    assert_eq!(breaker.snapshot().counters.successes, 100);
    // fail, fail, succeed, fail, fail: never three in a row, so it stays CLOSED.
    for outcome in [
        Outcome::Failure,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Failure,
        Outcome::Failure,
    ] {
        breaker.try_acquire().unwrap().record(outcome);
    }
    let snap = breaker.snapshot();
    assert_eq!(snap.state, StateKind::Closed);
    assert_eq!(snap.consecutive_failures, 2);
    assert_eq!((snap.counters.successes, snap.counters.failures), (101, 4));
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), StateKind::Open);
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
fn concurrent_calls_lose_no_count() {
    let clock = ManualClock::new();
    let breaker = Breaker::new(
        "shared",
        BreakerConfig {
            failure_threshold: 1_000_000,
            ..config()
        },
        clock,
    )
    .unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let breaker = &breaker;
            scope.spawn(move || {
                for i in 0..5_000 {
                    let guard = breaker.try_acquire().unwrap();
                    match (i + t) % 10 {
                        0 => guard.failure(),
                        1 => guard.ignore(),
                        _ => guard.success(),
                    }
                }
            });
        }
    });
    let c = breaker.snapshot().counters;
    assert_eq!(c.successes + c.failures + c.ignored, 20_000);
    assert_eq!((c.failures, c.ignored), (2_000, 2_000));
    assert_eq!(breaker.snapshot().in_flight, 0);
}

#[test]
fn lock_free_successes_still_make_up_the_window_rates() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..999 {
        breaker.try_acquire().unwrap().success();
    }
    breaker.try_acquire().unwrap().failure();
    let window = breaker.snapshot().window;
    assert_eq!((window.calls, window.failures), (1000, 1));
    assert!((window.failure_rate - 0.001).abs() < 1e-9, "{window:?}");
}

#[test]
fn lock_free_successes_age_out_of_the_window_on_time() {
    let clock = ManualClock::new();
    let (breaker, _) = shared(&clock);
    for _ in 0..5 {
        breaker.try_acquire().unwrap().success();
    }
    clock.advance(config().window + Duration::from_secs(1));
    breaker.try_acquire().unwrap().success();
    assert_eq!(
        breaker.snapshot().window.calls,
        1,
        "the five old successes left the window"
    );
    assert_eq!(breaker.snapshot().counters.successes, 6);
}

#[test]
fn in_flight_returns_to_zero_through_racing_transitions() {
    let breaker = Breaker::new(
        "racy",
        BreakerConfig {
            failure_threshold: 2,
            recovery_timeout: Duration::from_millis(1),
            half_open_max_calls: 4,
            success_threshold: 1,
            ..BreakerConfig::default()
        },
        crate::SystemClock::shared(),
    )
    .unwrap();
    std::thread::scope(|scope| {
        for t in 0..3 {
            let breaker = &breaker;
            scope.spawn(move || {
                for i in 0..20_000 {
                    if let Ok(guard) = breaker.try_acquire() {
                        if (i + t) % 7 == 0 {
                            guard.failure()
                        } else {
                            guard.success()
                        }
                    }
                }
            });
        }
        let breaker = &breaker;
        scope.spawn(move || {
            for _ in 0..2_000 {
                breaker.reset();
                std::thread::yield_now();
            }
        });
    });
    assert_eq!(breaker.snapshot().in_flight, 0);
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

// ---- properties ----

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
