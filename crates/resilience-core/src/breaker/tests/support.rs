//! What the breaker tests share: a default config, a [`CircuitBreaker`] driven by hand
//! through time ([`Machine`]), and a shared breaker whose hook records every transition.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::breaker::{
    Breaker, BreakerConfig, CircuitBreaker, Outcome, Permit, Rejection, StateKind, Transition,
    TransitionHook,
};
use crate::clock::ManualClock;

/// One millisecond, what an ordinary call takes.
pub(super) const MS: Duration = Duration::from_millis(1);

/// Opens after 3 failures in a row, for 30 s; 2 probes, 2 successes to close.
pub(super) fn config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        recovery_timeout: Duration::from_secs(30),
        half_open_max_calls: 2,
        success_threshold: 2,
        ..BreakerConfig::default()
    }
}

/// A [`CircuitBreaker`] with its own clock, moved by hand.
pub(super) struct Machine {
    pub(super) cb: CircuitBreaker,
    pub(super) now: Instant,
}

impl Machine {
    pub(super) fn new(config: BreakerConfig) -> Self {
        let now = Instant::now();
        Self {
            cb: CircuitBreaker::new(config, now),
            now,
        }
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    pub(super) fn acquire(&mut self) -> Result<Permit, Rejection> {
        self.cb.try_acquire(self.now).0
    }

    /// One call that takes `took` and ends with `outcome`; panics if it was rejected.
    pub(super) fn call(&mut self, outcome: Outcome, took: Duration) -> Option<Transition> {
        let permit = self.acquire().expect("call should be let through");
        self.now += took;
        self.cb.record(self.now, permit, outcome)
    }

    pub(super) fn fail(&mut self) -> Option<Transition> {
        self.call(Outcome::Failure, MS)
    }

    pub(super) fn succeed(&mut self) -> Option<Transition> {
        self.call(Outcome::Success, MS)
    }

    pub(super) fn kind(&self) -> StateKind {
        self.cb.kind_at(self.now)
    }

    pub(super) fn open_it(&mut self) {
        for _ in 0..self.cb.config().failure_threshold {
            self.fail();
        }
        assert_eq!(self.kind(), StateKind::Open);
    }
}

/// The transitions a hook was told of: breaker name, from, to.
pub(super) type Seen = Arc<Mutex<Vec<(String, StateKind, StateKind)>>>;

/// A shared breaker named `pool` on `config()` and `clock`, with a hook recording what
/// it is told.
pub(super) fn shared(clock: &Arc<ManualClock>) -> (Breaker, Seen) {
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
