//! [`AttemptPlan`]: the retry decisions of one request on one target (a pool of instances
//! or a single endpoint), as a pure state machine. The caller executes its [`Step`]s — it
//! picks, calls, sleeps — and tells the plan what happened; the plan decides everything
//! else.
//!
//! The rules, in the order they apply:
//! 1. A candidate is eligible when it is healthy, its breaker admits a call, it is not
//!    cooling down after a `Retry-After` and this request has not tried it yet. When no
//!    untried candidate is eligible, a tried one is (the same instance again: the others
//!    are down, ejected or cooling down). When nothing is eligible but a healthy candidate
//!    exists, a probe of the target's own breaker — or any request, when every healthy
//!    candidate is ejected and the target is behind a breaker of its own — may use a
//!    healthy candidate regardless of its breaker.
//! 2. A candidate that fell silent (a timeout) is never tried again by the request.
//! 3. A final refusal (context too long, content refused) ends the request as the
//!    client's error at once. Another refusal goes to an untried eligible candidate, at
//!    once and outside the retry budget, while attempts remain; otherwise it is the
//!    client's error.
//! 4. Any other failure is retried while the policy allows another attempt, a candidate
//!    is eligible, the deadline leaves time for the wait and the retry budget has a token
//!    (taken last, so no token is spent on a retry that cannot happen). The wait: none
//!    after a timeout (another candidate goes at once); after a `Retry-After`, none when
//!    another candidate is eligible, else the time asked (at least the backoff) when it is
//!    at most `max_retry_after` — the candidate that asked may then be tried again — and
//!    otherwise the target gives up; else the policy's jittered backoff.
//! 5. When nothing is eligible but candidates are cooling down, the request waits for the
//!    first to be free, if that is within `max_retry_after`, before the deadline, and the
//!    policy allows another attempt; otherwise it gives up, "throttled" when it made no
//!    attempt (the target only asked for quiet: its breaker counts nothing).
//! 6. At the deadline the request gives up as timed out.

use std::time::{Duration, Instant};

use super::outcome::{AttemptFailure, FailureClass};
use crate::breaker::Outcome;
use crate::fallback::ProviderError;
use crate::retry::{RetryBudget, RetryPolicy};

/// The longest a `Retry-After` keeps a candidate out of the rotation.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// How long a candidate stays out of the rotation after `failure`: the `Retry-After` it
/// asked for, at most [`MAX_COOLDOWN`]; never after a refusal of the request itself (which
/// says nothing about the candidate).
pub fn cooldown(failure: &AttemptFailure) -> Option<Duration> {
    if failure.class.is_refusal() {
        return None;
    }
    failure.retry_after.map(|asked| asked.min(MAX_COOLDOWN))
}

/// How a target retries.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    /// Attempts and backoff.
    pub retry: RetryPolicy,
    /// The longest `Retry-After` waited for within a request.
    pub max_retry_after: Duration,
    /// Whether a request may use an ejected candidate when every healthy one is ejected
    /// (true for a target behind a breaker of its own, which bounds that; a target without
    /// one answers "none available" at once, so a fallback behind it stays fast).
    pub bypass_when_all_ejected: bool,
}

/// One candidate of the target as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its id.
    pub id: &'a str,
    /// Whether health checks let it take traffic.
    pub healthy: bool,
    /// Whether its breaker would let a call through.
    pub admits: bool,
    /// How long it still cools down after a `Retry-After`, if it does.
    pub cooling: Option<Duration>,
}

/// Which candidates a try may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Whether candidates' breakers are consulted (false: a probe, or every healthy
    /// candidate ejected).
    pub respect_breakers: bool,
    /// Whether candidates this request already tried are left out.
    pub avoid_tried: bool,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Call one candidate that [`AttemptPlan::eligible`] accepts under `selection`, within
    /// `within` (the time left before the deadline; the caller's per-try limit may be
    /// shorter). Acquire its breaker only when `selection.respect_breakers`.
    Try {
        /// The candidates the pick may choose from.
        selection: Selection,
        /// The time left before the deadline.
        within: Duration,
    },
    /// Sleep this long, then ask again.
    Wait(Duration),
    /// Stop: the target cannot serve the request.
    GiveUp(Exhausted),
}

/// Why a target gave up on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    /// The request itself was refused and no other candidate took it: the client's error.
    Refused(AttemptFailure),
    /// The last attempt or the request's deadline ran out of time.
    TimedOut {
        /// The limit that ran out (the attempt's), or the time the request took.
        after: Duration,
        /// The last failed attempt, if any.
        last: Option<AttemptFailure>,
    },
    /// Every attempt failed; the last one.
    Failed(AttemptFailure),
    /// No candidate could be tried.
    NoneAvailable {
        /// Only because every candidate asked for quiet (`Retry-After`) and none was tried.
        throttled: bool,
    },
}

impl Exhausted {
    /// How the request counts for the target's own breaker: a refusal, or a target that only
    /// asked for quiet, says nothing about its health.
    pub fn breaker_outcome(&self) -> Outcome {
        match self {
            Self::Refused(_) | Self::NoneAvailable { throttled: true } => Outcome::Ignored,
            Self::TimedOut { .. } | Self::Failed(_) | Self::NoneAvailable { throttled: false } => {
                Outcome::Failure
            }
        }
    }
}

impl From<Exhausted> for ProviderError {
    fn from(exhausted: Exhausted) -> Self {
        match exhausted {
            Exhausted::Refused(failure) => Self::Client(Box::new(failure)),
            Exhausted::TimedOut { after, last } => Self::Timeout {
                after,
                last: last.map(Box::new),
            },
            Exhausted::Failed(failure) => Self::Upstream(Box::new(failure)),
            Exhausted::NoneAvailable { .. } => Self::NoneAvailable,
        }
    }
}

/// What the last failure decided for the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Nothing: the next step is decided from the candidates.
    Nothing,
    /// Wait first.
    Wait(Duration),
    /// Stop.
    Stop(Exhausted),
}

/// The retry decisions of one request on one target (see the module's rules). Built when
/// the request reaches the target; it counts the request in the retry budget then.
#[derive(Debug)]
pub struct AttemptPlan<'a> {
    settings: &'a PlanSettings,
    budget: &'a RetryBudget,
    probe: bool,
    started: Instant,
    deadline: Instant,
    /// A fixed jitter unit for the backoff (tests); `None` draws one.
    jitter: Option<f64>,
    tried: Vec<String>,
    refused: Vec<String>,
    silent: Vec<String>,
    waited: Option<String>,
    attempts: u32,
    last: Option<AttemptFailure>,
    refusal: Option<AttemptFailure>,
    pending: Pending,
}

impl<'a> AttemptPlan<'a> {
    /// A plan for a request that reached the target at `now` and must be over by
    /// `deadline`; `probe` when the target's own breaker let it through as a HALF_OPEN
    /// probe. Deposits the request in `budget`.
    pub fn new(
        settings: &'a PlanSettings,
        budget: &'a RetryBudget,
        probe: bool,
        now: Instant,
        deadline: Instant,
    ) -> Self {
        budget.deposit();
        Self {
            settings,
            budget,
            probe,
            started: now,
            deadline,
            jitter: None,
            tried: Vec::new(),
            refused: Vec::new(),
            silent: Vec::new(),
            waited: None,
            attempts: 0,
            last: None,
            refusal: None,
            pending: Pending::Nothing,
        }
    }

    /// Uses `unit` (0..=1) instead of a random draw for the backoff's jitter.
    pub fn with_jitter(mut self, unit: f64) -> Self {
        self.jitter = Some(unit);
        self
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next step at `now`, given the candidates as they are now.
    pub fn next(&mut self, now: Instant, candidates: &[Candidate<'_>]) -> Step {
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Stop(exhausted) => return Step::GiveUp(exhausted),
            Pending::Wait(wait) => return Step::Wait(wait),
            Pending::Nothing => {}
        }
        let within = self.deadline.saturating_duration_since(now);
        if within.is_zero() {
            return Step::GiveUp(self.exhausted(now, true, false));
        }
        match self.selection(candidates) {
            Some(selection) => Step::Try { selection, within },
            None => self.none_picked(now, candidates),
        }
    }

    /// The step when a [`Step::Try`] found no candidate to pick: wait for one cooling down,
    /// or give up.
    pub fn none_picked(&mut self, now: Instant, candidates: &[Candidate<'_>]) -> Step {
        let within = self.deadline.saturating_duration_since(now);
        let soonest = candidates
            .iter()
            .filter(|c| !self.is_silent(c) && c.healthy && self.admits(c))
            .filter_map(|c| c.cooling.map(|left| (c.id, left)))
            .min_by_key(|(_, left)| *left);
        let mut throttled = false;
        if let Some((id, wait)) = soonest {
            if wait <= self.settings.max_retry_after
                && wait < within
                && self.settings.retry.allows_another(self.attempts)
            {
                self.waited = Some(id.to_owned());
                return Step::Wait(wait);
            }
            throttled = self.attempts == 0;
        }
        Step::GiveUp(self.exhausted(now, false, throttled))
    }

    /// Whether `candidate` may take a try under `selection`.
    pub fn eligible(&self, candidate: &Candidate<'_>, selection: Selection) -> bool {
        if self.is_silent(candidate) {
            return false;
        }
        let waited = self.waited.as_deref() == Some(candidate.id);
        if !waited && selection.avoid_tried && self.tried.iter().any(|t| t == candidate.id) {
            return false;
        }
        if !waited && candidate.cooling.is_some() {
            return false;
        }
        candidate.healthy && (!selection.respect_breakers || self.admits(candidate))
    }

    /// The picked candidate's breaker refused the call after all: choose again.
    pub fn breaker_refused(&mut self, id: &str) {
        self.refused.push(id.to_owned());
    }

    /// An attempt on `id` begins.
    pub fn attempt_started(&mut self, id: &str) {
        self.attempts += 1;
        self.tried.push(id.to_owned());
        self.waited = None;
    }

    /// The attempt failed with `failure` at `now`; `candidates` as they are after it (a
    /// `Retry-After` already cooling its target down). Decides the next step.
    pub fn attempt_failed(
        &mut self,
        failure: AttemptFailure,
        now: Instant,
        candidates: &[Candidate<'_>],
    ) {
        if failure.class.is_refusal() {
            let untried = Selection {
                respect_breakers: true,
                avoid_tried: true,
            };
            let another = !failure.class.is_final_refusal()
                && self.attempts < self.settings.retry.max_attempts
                && candidates.iter().any(|c| self.eligible(c, untried));
            self.refusal = Some(failure);
            if !another {
                self.pending = Pending::Stop(self.exhausted(now, false, false));
            }
            return;
        }
        self.refusal = None;
        if failure.class == FailureClass::Timeout {
            self.silent.push(failure.target.clone());
        }
        let wait = self.wait_after(&failure, candidates);
        self.last = Some(failure);
        let Some(wait) = wait else {
            self.pending = Pending::Stop(self.exhausted(now, false, false));
            return;
        };
        if !self.may_retry(now, candidates, wait) {
            self.pending = Pending::Stop(self.exhausted(now, false, false));
            return;
        }
        if !wait.is_zero() {
            self.pending = Pending::Wait(wait);
        }
    }

    /// The wait before the next try after `failure`, or `None` when the target should stop.
    fn wait_after(
        &mut self,
        failure: &AttemptFailure,
        candidates: &[Candidate<'_>],
    ) -> Option<Duration> {
        if failure.class == FailureClass::Timeout {
            return Some(Duration::ZERO);
        }
        let retry = self.attempts.saturating_sub(1);
        let backoff = match self.jitter {
            Some(unit) => self.settings.retry.backoff_at(retry, unit),
            None => self.settings.retry.backoff(retry),
        };
        let Some(asked) = failure.retry_after else {
            return Some(backoff);
        };
        if self.selection(candidates).is_some() {
            return Some(Duration::ZERO);
        }
        if asked <= self.settings.max_retry_after {
            self.waited = Some(failure.target.clone());
            // `Retry-After: 0` is no licence for a tight loop.
            return Some(asked.max(backoff));
        }
        None
    }

    /// Whether another try may follow after `wait`: the policy allows one, a candidate is
    /// eligible, the deadline leaves time, and the budget has a token (taken last).
    fn may_retry(&self, now: Instant, candidates: &[Candidate<'_>], wait: Duration) -> bool {
        self.settings.retry.allows_another(self.attempts)
            && self.selection(candidates).is_some()
            && wait < self.deadline.saturating_duration_since(now)
            && self.budget.try_withdraw()
    }

    /// Which candidates the next try may go to, or `None` when none may take it.
    fn selection(&self, candidates: &[Candidate<'_>]) -> Option<Selection> {
        let mut healthy = candidates.iter().filter(|c| c.healthy).peekable();
        healthy.peek()?;
        let accepted = |selection| candidates.iter().any(|c| self.eligible(c, selection));
        for avoid_tried in [true, false] {
            let strict = Selection {
                respect_breakers: true,
                avoid_tried,
            };
            if accepted(strict) {
                return Some(strict);
            }
        }
        let relaxed = Selection {
            respect_breakers: false,
            avoid_tried: candidates.iter().filter(|c| c.healthy).count() > 1,
        };
        let all_ejected = healthy.all(|c| !self.admits(c));
        let may_relax = self.probe || (all_ejected && self.settings.bypass_when_all_ejected);
        (may_relax && accepted(relaxed)).then_some(relaxed)
    }

    fn admits(&self, candidate: &Candidate<'_>) -> bool {
        candidate.admits && !self.refused.iter().any(|r| r == candidate.id)
    }

    fn is_silent(&self, candidate: &Candidate<'_>) -> bool {
        self.silent.iter().any(|s| s == candidate.id)
    }

    /// The target's final answer; a refusal no other try followed stays the client's.
    fn exhausted(&self, now: Instant, out_of_time: bool, throttled: bool) -> Exhausted {
        if let Some(refusal) = &self.refusal {
            return Exhausted::Refused(refusal.clone());
        }
        match &self.last {
            Some(last) if last.class == FailureClass::Timeout && !out_of_time => {
                Exhausted::TimedOut {
                    after: last.timeout.unwrap_or_else(|| now - self.started),
                    last: Some(last.clone()),
                }
            }
            _ if out_of_time => Exhausted::TimedOut {
                after: now.saturating_duration_since(self.started),
                last: self.last.clone(),
            },
            Some(last) => Exhausted::Failed(last.clone()),
            None => Exhausted::NoneAvailable { throttled },
        }
    }
}
