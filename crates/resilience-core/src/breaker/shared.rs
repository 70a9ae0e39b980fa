//! [`Breaker`]: a [`CircuitBreaker`] shared between tasks, reading time from a [`Clock`]
//! and telling hooks about every transition.
//!
//! The lock is held for a few field updates only; hooks run after it is released, so a hook
//! may read the breaker (or take its time writing to a database through a channel).
//!
//! The common case takes no lock at all: while the breaker is CLOSED with no failure run in
//! progress and no bulkhead or rate threshold to feed ([`CircuitBreaker::admits_freely`]),
//! a call is admitted by reading one atomic word and its success is one atomic add. The
//! word is republished after every locked operation; anything else (a failure, a slow or
//! ignored call, a call that straddles a transition) takes the lock and the pure machine
//! decides. Successes counted on the lock-free path are folded into the machine's counters
//! and rolling window at its next locked operation, and at least once per window bucket
//! (a success that finds a fold due takes the lock), so the reported rates stay true.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::BreakerConfig;
use super::state::{
    BreakerCounters, BreakerState, CircuitBreaker, Outcome, Permit, Rejection, StateKind,
    Transition, TransitionReason, WindowStats,
};
use crate::Error;
use crate::clock::{SharedClock, unix_millis};

/// Bit of the published word: calls may be admitted without the lock.
const ADMIT_FREELY: u64 = 1;
/// Bit of the published word: no failure run in progress, so a success changes only counts.
const NO_FAILURE_RUN: u64 = 2;
/// The generation is stored above the flag bits.
const GENERATION_SHIFT: u32 = 2;

/// Told of every transition: the breaker's name and the transition.
pub type TransitionHook = Arc<dyn Fn(&str, &Transition) + Send + Sync>;

/// A thread-safe circuit breaker with a name, a clock and transition hooks.
pub struct Breaker {
    name: Arc<str>,
    clock: SharedClock,
    inner: Mutex<CircuitBreaker>,
    hooks: Vec<TransitionHook>,
    /// `generation << GENERATION_SHIFT | flags`, republished after every locked operation.
    published: AtomicU64,
    /// Copied from the configuration: a success this slow goes through the machine.
    slow_call_duration: Duration,
    /// Successes recorded on the lock-free path, not yet folded into the machine.
    untracked_successes: AtomicU64,
    /// When the breaker was created; fold times count from it.
    origin: Instant,
    /// Nanoseconds after `origin` of the last fold. Lock-free successes all happen less
    /// than one window bucket after it (a later one folds first), so they are folded into
    /// the window at that instant, within one bucket of the truth.
    last_fold: AtomicU64,
    /// The window's bucket length, in nanoseconds.
    resolution: u64,
}

/// What a breaker looks like at one instant, for `/health`, `/metrics` and the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerSnapshot {
    /// The breaker's name.
    pub name: String,
    /// `CLOSED`, `OPEN` or `HALF_OPEN`.
    pub state: StateKind,
    /// Open until an operator resets it.
    pub forced_open: bool,
    /// Milliseconds until probes are let through, when OPEN on a timer.
    pub retry_after_ms: Option<u64>,
    /// Failures in a row while CLOSED.
    pub consecutive_failures: u32,
    /// Calls in flight that the breaker tracks: all of them when a bulkhead is set,
    /// otherwise those admitted while not CLOSED (probes).
    pub in_flight: u32,
    /// Re-openings from HALF_OPEN since it last closed.
    pub reopens: u32,
    /// The rolling window.
    pub window: WindowStats,
    /// Lifetime counters.
    pub counters: BreakerCounters,
}

/// A transition with wall-clock time, for JSON and the database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionRecord {
    /// The state left.
    pub from: StateKind,
    /// The state entered.
    pub to: StateKind,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Why.
    pub reason: TransitionReason,
}

impl Breaker {
    /// A CLOSED breaker named `name`; fails if `config` is invalid.
    pub fn new(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        clock: SharedClock,
    ) -> Result<Self, Error> {
        config.validate()?;
        let inner = CircuitBreaker::new(config, clock.now());
        let published = AtomicU64::new(word(&inner));
        let slow_call_duration = inner.config().slow_call_duration;
        let origin = clock.now();
        let resolution = nanos(inner.window_resolution());
        Ok(Self {
            name: name.into(),
            clock,
            inner: Mutex::new(inner),
            hooks: Vec::new(),
            published,
            slow_call_duration,
            untracked_successes: AtomicU64::new(0),
            origin,
            last_fold: AtomicU64::new(0),
            resolution,
        })
    }

    /// Adds a hook told of every transition from now on.
    pub fn with_hook(mut self, hook: TransitionHook) -> Self {
        self.hooks.push(hook);
        self
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the machine under the lock at `now`, with the lock-free path's counts
    /// folded in before and the published word refreshed after.
    fn with_machine<R>(&self, now: Instant, f: impl FnOnce(&mut CircuitBreaker) -> R) -> R {
        let mut inner = self.lock();
        let folded = self.untracked_successes.swap(0, Ordering::AcqRel);
        if folded > 0 {
            let last_fold = Duration::from_nanos(self.last_fold.load(Ordering::Acquire));
            let at = self.origin.checked_add(last_fold).unwrap_or(now).min(now);
            inner.add_untracked_successes(at, folded);
        }
        self.last_fold
            .store(self.since_origin(now), Ordering::Release);
        let result = f(&mut inner);
        self.published.store(word(&inner), Ordering::Release);
        result
    }

    fn lock(&self) -> MutexGuard<'_, CircuitBreaker> {
        // The breaker's methods never panic, so a poisoned lock still holds a sound state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, transition: Option<Transition>) {
        if let Some(transition) = transition {
            tracing::info!(
                breaker = %self.name,
                from = %transition.from,
                to = %transition.to,
                reason = ?transition.reason,
                "circuit breaker transition"
            );
            for hook in &self.hooks {
                hook(&self.name, &transition);
            }
        }
    }

    /// Asks to make one call now. On success the call must be made and its outcome given to
    /// the guard; a guard dropped without an outcome counts as [`Outcome::Ignored`].
    pub fn try_acquire(&self) -> Result<BreakerGuard<'_>, Rejection> {
        self.acquire_permit().map(|permit| BreakerGuard {
            breaker: BreakerRef::Borrowed(self),
            permit: Some(permit),
        })
    }

    /// [`Self::try_acquire`] for a call that outlives the borrow, such as a stream handed
    /// to another task: the guard holds the breaker itself.
    pub fn try_acquire_owned(self: &Arc<Self>) -> Result<BreakerGuard<'static>, Rejection> {
        self.acquire_permit().map(|permit| BreakerGuard {
            breaker: BreakerRef::Owned(Arc::clone(self)),
            permit: Some(permit),
        })
    }

    fn acquire_permit(&self) -> Result<Permit, Rejection> {
        let now = self.clock.now();
        let published = self.published.load(Ordering::Acquire);
        if published & ADMIT_FREELY != 0 {
            return Ok(Permit::untracked(published >> GENERATION_SHIFT, now));
        }
        let (result, transition) = self.with_machine(now, |m| m.try_acquire(now));
        self.notify(transition);
        result
    }

    /// Whether a call would be let through now, without taking a slot (for balancers that
    /// skip targets whose breaker is open).
    pub fn is_call_permitted(&self) -> bool {
        if self.published.load(Ordering::Acquire) & ADMIT_FREELY != 0 {
            return true;
        }
        let now = self.clock.now();
        let inner = self.lock();
        match inner.state() {
            BreakerState::Closed => true,
            BreakerState::Open { until } => until.is_some_and(|until| now >= until),
            BreakerState::HalfOpen { probes, .. } => probes < inner.config().half_open_max_calls,
        }
    }

    fn record(&self, permit: Permit, outcome: Outcome) {
        let now = self.clock.now();
        if outcome == Outcome::Success && self.records_freely(&permit, now) {
            self.untracked_successes.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let transition = self.with_machine(now, |m| m.record(now, permit, outcome));
        self.notify(transition);
    }

    /// Whether a success of `permit`'s call, ending at `now`, only needs counting: admitted
    /// on the lock-free path in the current generation, still free, no failure run to
    /// reset, not slow, and no fold of the counts into the window due.
    fn records_freely(&self, permit: &Permit, now: Instant) -> bool {
        let published = self.published.load(Ordering::Acquire);
        let flags = ADMIT_FREELY | NO_FAILURE_RUN;
        published & flags == flags
            && published >> GENERATION_SHIFT == permit.generation()
            && !permit.is_tracked()
            && now.saturating_duration_since(permit.started()) < self.slow_call_duration
            && self.since_origin(now)
                < self
                    .last_fold
                    .load(Ordering::Acquire)
                    .saturating_add(self.resolution)
    }

    fn since_origin(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.origin))
    }

    /// The state now; an elapsed OPEN becomes HALF_OPEN at this read (and hooks hear of it).
    pub fn state(&self) -> StateKind {
        let now = self.clock.now();
        let (kind, transition) = self.with_machine(now, |m| {
            let transition = m.poll(now);
            (m.state().kind(), transition)
        });
        self.notify(transition);
        kind
    }

    /// Back to CLOSED with fresh counts.
    pub fn reset(&self) {
        let now = self.clock.now();
        let transition = self.with_machine(now, |m| m.reset(now));
        self.notify(transition);
    }

    /// OPEN until [`Self::reset`].
    pub fn force_open(&self) {
        let now = self.clock.now();
        let transition = self.with_machine(now, |m| m.force_open(now));
        self.notify(transition);
    }

    /// Everything an operator wants to see, read at one instant.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = self.clock.now();
        let (snapshot, transition) = self.with_machine(now, |inner| {
            let transition = inner.poll(now);
            let (forced_open, retry_after) = match inner.state() {
                BreakerState::Open { until: None } => (true, None),
                BreakerState::Open { until: Some(until) } => {
                    (false, Some(until.saturating_duration_since(now)))
                }
                _ => (false, None),
            };
            let snapshot = BreakerSnapshot {
                name: self.name.to_string(),
                state: inner.state().kind(),
                forced_open,
                retry_after_ms: retry_after.map(millis),
                consecutive_failures: inner.consecutive_failures(),
                in_flight: inner.in_flight(),
                reopens: inner.reopens(),
                window: inner.window_stats(now),
                counters: inner.counters(),
            };
            (snapshot, transition)
        });
        self.notify(transition);
        snapshot
    }

    /// The recent transitions, oldest first, with wall-clock times.
    pub fn history(&self) -> Vec<TransitionRecord> {
        let inner = self.lock();
        inner
            .history()
            .map(|t| TransitionRecord {
                from: t.from,
                to: t.to,
                at_ms: unix_millis(self.clock.wall_at(t.at)),
                reason: t.reason,
            })
            .collect()
    }

    /// Runs `call` through the breaker, classifying its result with `classify`.
    ///
    /// Returns `Err(Rejection)` without running `call` when the breaker does not let it
    /// through. If the returned future is dropped mid-call the outcome counts as ignored.
    pub async fn call<T, E, Fut>(
        &self,
        call: impl FnOnce() -> Fut,
        classify: impl FnOnce(&Result<T, E>) -> Outcome,
    ) -> Result<Result<T, E>, Rejection>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let guard = self.try_acquire()?;
        let result = call().await;
        guard.record(classify(&result));
        Ok(result)
    }

    /// The instant the breaker reads time from now (for callers that time calls).
    pub fn now(&self) -> Instant {
        self.clock.now()
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("state", &self.lock().state())
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

/// The word [`Breaker`] publishes for the lock-free path.
fn word(machine: &CircuitBreaker) -> u64 {
    let mut flags = 0;
    if machine.admits_freely() {
        flags |= ADMIT_FREELY;
    }
    if machine.consecutive_failures() == 0 {
        flags |= NO_FAILURE_RUN;
    }
    (machine.generation() << GENERATION_SHIFT) | flags
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One call let through a [`Breaker`]; say how it ended with [`Self::record`] (or the
/// shorthands). Dropped without an outcome, it counts as [`Outcome::Ignored`].
#[must_use = "a guard dropped at once records an ignored call"]
pub struct BreakerGuard<'a> {
    breaker: BreakerRef<'a>,
    permit: Option<Permit>,
}

/// The breaker a guard reports to: borrowed, or shared for a guard that outlives the borrow.
enum BreakerRef<'a> {
    Borrowed(&'a Breaker),
    Owned(Arc<Breaker>),
}

impl std::ops::Deref for BreakerRef<'_> {
    type Target = Breaker;

    fn deref(&self) -> &Breaker {
        match self {
            Self::Borrowed(breaker) => breaker,
            Self::Owned(breaker) => breaker,
        }
    }
}

impl BreakerGuard<'_> {
    /// Records the call's outcome.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, outcome);
        }
    }

    /// Records a success.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Records a failure.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Records a call that says nothing about the dependency's health.
    pub fn ignore(self) {
        self.record(Outcome::Ignored);
    }

    /// Whether the call is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.permit.as_ref().is_some_and(Permit::is_probe)
    }
}

impl Drop for BreakerGuard<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, Outcome::Ignored);
        }
    }
}
