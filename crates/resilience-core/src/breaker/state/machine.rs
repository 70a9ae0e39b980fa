//! [`CircuitBreaker`], the machine: admission, outcomes, the CLOSED rules (a failure run,
//! the window's rates), re-opening with backoff, operator control, and its history.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::counts::Tally;
use super::{
    BreakerCounters, BreakerState, Outcome, Permit, Rejection, StateKind, Transition,
    TransitionReason, WindowStats,
};
use crate::breaker::config::BreakerConfig;
use crate::window::{MAX_BUCKETS, RollingWindow};

/// Transitions kept in a breaker's history; older ones are dropped.
pub const HISTORY_LEN: usize = 64;

/// A circuit breaker, not shareable by itself: wrap it (see [`Breaker`](crate::breaker::Breaker))
/// to use it from many tasks.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Bumped on every transition; outcomes of calls let through before it are counted
    /// but do not move the state.
    generation: u64,
    window: RollingWindow<Tally>,
    consecutive_failures: u32,
    /// Re-openings from HALF_OPEN since the breaker last closed.
    reopens: u32,
    in_flight: u32,
    counters: BreakerCounters,
    history: VecDeque<Transition>,
}

impl CircuitBreaker {
    /// A CLOSED breaker; `config` should have passed [`BreakerConfig::validate`].
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        let window = RollingWindow::new(now, config.window, config.window_buckets);
        Self {
            config,
            state: BreakerState::Closed,
            generation: 0,
            window,
            consecutive_failures: 0,
            reopens: 0,
            in_flight: 0,
            counters: BreakerCounters::default(),
            history: VecDeque::with_capacity(HISTORY_LEN),
        }
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state as stored (an elapsed OPEN still reads OPEN here until [`Self::poll`]).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The state as a reader at `now` should see it: an OPEN whose period has elapsed reads
    /// HALF_OPEN at once.
    pub fn kind_at(&self, now: Instant) -> StateKind {
        match self.state {
            BreakerState::Open { until: Some(until) } if now >= until => StateKind::HalfOpen,
            state => state.kind(),
        }
    }

    /// Applies the transitions that time alone causes (OPEN → HALF_OPEN).
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            BreakerState::Open { until: Some(until) } if now >= until => self.transition(
                now,
                BreakerState::HalfOpen {
                    probes: 0,
                    successes: 0,
                },
                TransitionReason::RecoveryTimeoutElapsed,
            ),
            _ => None,
        }
    }

    /// Asks to make one call at `now`. Returns the permit (or why not) and the transition
    /// that asking caused, if any.
    pub fn try_acquire(&mut self, now: Instant) -> (Result<Permit, Rejection>, Option<Transition>) {
        let transition = self.poll(now);
        (self.admit(now), transition)
    }

    fn admit(&mut self, now: Instant) -> Result<Permit, Rejection> {
        if let BreakerState::Open { until } = self.state {
            self.counters.rejected_open += 1;
            return Err(Rejection::BreakerOpen {
                retry_after: until.map(|until| until.saturating_duration_since(now)),
            });
        }
        if self
            .config
            .max_concurrent_calls
            .is_some_and(|max| self.in_flight >= max)
        {
            self.counters.rejected_bulkhead += 1;
            return Err(Rejection::BulkheadFull);
        }
        let probe = match &mut self.state {
            BreakerState::HalfOpen { probes, .. } => {
                if *probes >= self.config.half_open_max_calls {
                    self.counters.rejected_probe_limit += 1;
                    return Err(Rejection::ProbeLimit);
                }
                *probes += 1;
                true
            }
            _ => false,
        };
        self.in_flight += 1;
        Ok(Permit::tracked(self.generation, now, probe))
    }

    /// Records how the call behind `permit` ended, at `now`; returns the transition caused.
    pub fn record(&mut self, now: Instant, permit: Permit, outcome: Outcome) -> Option<Transition> {
        if permit.is_tracked() {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let slow =
            now.saturating_duration_since(permit.started()) >= self.config.slow_call_duration;
        match outcome {
            Outcome::Success => self.counters.successes += 1,
            Outcome::Failure => self.counters.failures += 1,
            Outcome::Ignored => self.counters.ignored += 1,
        }
        if slow {
            self.counters.slow += 1;
        }
        if permit.generation() != self.generation {
            return None;
        }
        match self.state {
            BreakerState::Closed => self.record_closed(now, outcome, slow),
            BreakerState::HalfOpen { probes, successes } => {
                let probes = probes.saturating_sub(1);
                match outcome {
                    Outcome::Ignored => {
                        self.state = BreakerState::HalfOpen { probes, successes };
                        None
                    }
                    Outcome::Failure => {
                        self.reopens += 1;
                        self.open(now, TransitionReason::ProbeFailed)
                    }
                    Outcome::Success if successes + 1 >= self.config.success_threshold => self
                        .transition(
                            now,
                            BreakerState::Closed,
                            TransitionReason::ProbesSucceeded {
                                count: successes + 1,
                            },
                        ),
                    Outcome::Success => {
                        self.state = BreakerState::HalfOpen {
                            probes,
                            successes: successes + 1,
                        };
                        None
                    }
                }
            }
            BreakerState::Open { .. } => None,
        }
    }

    fn record_closed(&mut self, now: Instant, outcome: Outcome, slow: bool) -> Option<Transition> {
        let failed = match outcome {
            Outcome::Ignored => return None,
            Outcome::Success => false,
            Outcome::Failure => true,
        };
        self.window.add(now, |tally| {
            tally.calls += 1;
            tally.failures += u32::from(failed);
            tally.slow += u32::from(slow);
        });
        if failed {
            self.consecutive_failures += 1;
        } else {
            self.consecutive_failures = 0;
        }
        let threshold = self.config.failure_threshold;
        if threshold > 0 && self.consecutive_failures >= threshold {
            let count = self.consecutive_failures;
            return self.open(now, TransitionReason::ConsecutiveFailures { count });
        }
        if self.config.failure_rate_threshold.is_none()
            && self.config.slow_call_rate_threshold.is_none()
        {
            return None;
        }
        let stats = self.window_stats(now);
        if stats.calls < self.config.minimum_calls.max(1) {
            return None;
        }
        if let Some(limit) = self.config.failure_rate_threshold
            && stats.failure_rate >= limit
        {
            let rate = stats.failure_rate;
            return self.open(now, TransitionReason::FailureRate { rate });
        }
        if let Some(limit) = self.config.slow_call_rate_threshold
            && stats.slow_call_rate >= limit
        {
            let rate = stats.slow_call_rate;
            return self.open(now, TransitionReason::SlowCallRate { rate });
        }
        None
    }

    /// Back to CLOSED with fresh counts (an operator's reset); the lifetime counters stay.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        self.reopens = 0;
        if self.state == BreakerState::Closed {
            self.window.clear();
            self.consecutive_failures = 0;
            return None;
        }
        self.transition(now, BreakerState::Closed, TransitionReason::ManualReset)
    }

    /// OPEN until the next [`Self::reset`], whatever the calls do.
    pub fn force_open(&mut self, now: Instant) -> Option<Transition> {
        if self.state == (BreakerState::Open { until: None }) {
            return None;
        }
        self.transition(
            now,
            BreakerState::Open { until: None },
            TransitionReason::ForcedOpen,
        )
    }

    fn open(&mut self, now: Instant, reason: TransitionReason) -> Option<Transition> {
        let unit = if self.config.reopen_backoff.is_some() && self.reopens > 0 {
            rand::random::<f64>()
        } else {
            0.0
        };
        let period = self.config.open_period(self.reopens, unit);
        // Validation bounds the period to a day; saturate all the same rather than panic.
        let until = now.checked_add(period).unwrap_or(now);
        self.transition(now, BreakerState::Open { until: Some(until) }, reason)
    }

    fn transition(
        &mut self,
        now: Instant,
        to: BreakerState,
        reason: TransitionReason,
    ) -> Option<Transition> {
        let from = self.state.kind();
        self.state = to;
        self.generation += 1;
        self.consecutive_failures = 0;
        if to == BreakerState::Closed {
            self.window.clear();
            self.reopens = 0;
        }
        self.counters.transitions += 1;
        let transition = Transition {
            from,
            to: to.kind(),
            at: now,
            reason,
            sequence: self.generation,
            counters: self.counters,
        };
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(transition);
        Some(transition)
    }

    /// Counts and rates in the rolling window at `now`.
    pub fn window_stats(&self, now: Instant) -> WindowStats {
        self.window.sum(now).stats()
    }

    /// Whether a call may be admitted without asking: CLOSED, and neither a bulkhead nor a
    /// rate threshold needs to see every call as it starts or ends. When true, a success of
    /// a call admitted in this generation changes nothing but the success count (provided
    /// no failure run is in progress), which is what lets
    /// [`Breaker`](crate::breaker::Breaker) keep such calls off its lock.
    pub fn admits_freely(&self) -> bool {
        self.state == BreakerState::Closed
            && self.config.max_concurrent_calls.is_none()
            && self.config.failure_rate_threshold.is_none()
            && self.config.slow_call_rate_threshold.is_none()
    }

    /// Bumped on every transition.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds successes (none of them slow) of calls that were admitted and finished on the
    /// lock-free path, into the counters and the window at `now`: they change nothing
    /// else, as [`Self::admits_freely`] explains.
    pub(crate) fn add_untracked_successes(&mut self, now: Instant, successes: u64) {
        self.counters.successes += successes;
        let calls = u32::try_from(successes).unwrap_or(u32::MAX);
        self.window
            .add(now, |tally| tally.calls = tally.calls.saturating_add(calls));
    }

    /// The rolling window's time resolution: the length of one bucket.
    pub(crate) fn window_resolution(&self) -> Duration {
        self.config.window / self.config.window_buckets.clamp(1, MAX_BUCKETS)
    }

    /// Failures in a row while CLOSED.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Calls let through and not yet recorded.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Re-openings from HALF_OPEN since the breaker last closed.
    pub fn reopens(&self) -> u32 {
        self.reopens
    }

    /// Lifetime counters.
    pub fn counters(&self) -> BreakerCounters {
        self.counters
    }

    /// The last [`HISTORY_LEN`] transitions, oldest first.
    pub fn history(&self) -> impl ExactSizeIterator<Item = &Transition> {
        self.history.iter()
    }
}
