//! [`Pool::generate`]: one request through the pool, with its tries and retries (the rules
//! are listed in the module above).

use std::sync::Arc;
use std::time::Duration;

use resilience_core::balancer::InFlight;
use resilience_core::breaker::BreakerGuard;
use resilience_core::fallback::ProviderError;
use resilience_core::health::HealthTracker;
use tokio::time::Instant;

use super::live::{LiveStream, StreamEnd, StreamSlot};
use super::members::Member;
use super::{Answer, GatewayRequest, MemberEndpoint, Pool, UpstreamObserver};
use crate::upstream::{Completed, OpenStream, UpstreamError};

/// The model label of an attempt whose instance names none and never answered.
const UNKNOWN_MODEL: &str = "unknown";

/// The longest a `Retry-After` keeps a target out of the rotation.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// Which instances a pick may choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Selection {
    /// Whether instance breakers are consulted (outlier ejection) or bypassed (a pool
    /// probe, or every healthy instance ejected).
    respect_breakers: bool,
    /// Whether instances this request already tried are left out (false when no untried
    /// instance may take the try: then the same one is tried again).
    avoid_tried: bool,
}

/// What one request has done so far.
#[derive(Debug, Default)]
struct Tries {
    /// Instances called, in order.
    tried: Vec<String>,
    /// Instances whose breaker refused a call to this request.
    refused: Vec<String>,
    /// Instances that did not answer in time: never called again by this request.
    silent: Vec<String>,
    /// The instance this request waited for (its `Retry-After`): it may be tried again.
    waited: Option<String>,
    /// Calls made.
    attempts: u32,
    /// The last call's failure: the instance and the error.
    last: Option<(String, UpstreamError)>,
    /// Whether the request's deadline ended the tries.
    out_of_time: bool,
    /// The last try's refusal of the request itself (cleared by a later upstream failure):
    /// if no other try follows, the request ends as the client's error.
    refusal: Option<String>,
    /// Whether nothing was tried because every instance asked to be left alone for longer
    /// than this request may wait (`Retry-After`): a capacity signal, not a failure.
    throttled: bool,
}

/// What a failed try's error asks of the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pause {
    /// Nothing: the target fell silent, another one goes at once.
    None,
    /// The target asked for this long (`Retry-After`).
    Asked(Duration),
    /// The policy's jittered backoff.
    Backoff,
}

/// The pause a failed try's `error` asks for (see [`Pool::wait_before_retry`]).
pub(super) fn pause_after(error: &UpstreamError) -> Pause {
    if error.is_timeout() {
        Pause::None
    } else if let Some(asked) = error.retry_after() {
        Pause::Asked(asked)
    } else {
        Pause::Backoff
    }
}

/// What a successful try gave.
enum Reply {
    Complete(Completed),
    Stream(OpenStream),
}

impl Pool {
    /// Serves `req` from this pool's instances (see the module's rules).
    ///
    /// Fails with [`ProviderError::CircuitOpen`] at once when the pool breaker is open;
    /// [`ProviderError::Client`] when an upstream refused the request itself;
    /// [`ProviderError::NoneAvailable`] when no instance could be tried;
    /// [`ProviderError::Timeout`] when the last try or the deadline ran out of time; and
    /// [`ProviderError::Upstream`] with the last failure otherwise. If the future is dropped
    /// mid-request, the pool breaker counts the request as ignored. A stream counts as a
    /// success for the pool breaker once its first token arrived.
    pub async fn generate(&self, req: &GatewayRequest) -> Result<Answer, ProviderError> {
        let guard = match &self.pool_breaker {
            Some(breaker) => match breaker.try_acquire() {
                Ok(guard) => Some(guard),
                Err(rejection) => {
                    tracing::debug!(pool = %self.settings.name, request_id = %req.request_id,
                        reason = rejection.reason(), "pool breaker refused the request");
                    return Err(ProviderError::CircuitOpen);
                }
            },
            None => None,
        };
        let probe = guard.as_ref().is_some_and(BreakerGuard::is_probe);
        let (result, throttled) = self.serve(req, probe).await;
        if let Some(guard) = guard {
            match &result {
                Ok(_) => guard.success(),
                // Refused input, or instances that asked for quiet: nothing failed.
                Err(ProviderError::Client(_)) => guard.ignore(),
                Err(_) if throttled => guard.ignore(),
                Err(_) => guard.failure(),
            }
        }
        result
    }

    /// The tries of one request, after the pool breaker let it through; with the answer,
    /// whether the pool was only throttled (nothing tried: every instance cooling down).
    async fn serve(
        &self,
        req: &GatewayRequest,
        probe: bool,
    ) -> (Result<Answer, ProviderError>, bool) {
        let started = Instant::now();
        let members = self.members_for(&self.discovery.snapshot());
        let endpoints = members.endpoints.as_slice();
        self.budget.deposit();
        let mut tries = Tries::default();
        loop {
            let remaining = req.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                tries.out_of_time = true;
                break;
            }
            let Some((picked, selection)) = self.pick(endpoints, &tries, probe) else {
                // Instances that asked for quiet (Retry-After) briefly: wait for the first
                // one rather than call the pool failed.
                if let Some((id, wait)) = self.soonest_cooled(endpoints, &tries) {
                    let policy = &self.settings.retry;
                    if wait <= self.settings.max_retry_after
                        && wait < remaining
                        && policy.allows_another(tries.attempts)
                    {
                        tries.waited = Some(id);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    tries.throttled = tries.attempts == 0;
                }
                break;
            };
            let member: &Member = &picked;
            let instance_guard = if selection.respect_breakers {
                match member.breaker.try_acquire_owned() {
                    Ok(guard) => Some(guard),
                    Err(_) => {
                        // It closed its last probe slot since the pick: choose again.
                        tries.refused.push(member.id.clone());
                        continue;
                    }
                }
            } else {
                None
            };
            tries.attempts += 1;
            tries.tried.push(member.id.clone());
            tries.waited = None;
            let call_started = Instant::now();
            let result = self.call(member, req, remaining).await;
            let took = call_started.elapsed();
            let error = match result {
                Ok(Reply::Complete(answer)) => {
                    if let Some(guard) = instance_guard {
                        guard.success();
                    }
                    self.record_passive(member, true);
                    member.learn_model(&answer.model);
                    let model = self.model_of(member, req);
                    self.observer.attempt(&member.id, &model, Ok(200), took);
                    // The instance's own SERVICE_ID when it says it (a static URL's id is
                    // only host:port), as the lab's `served_by` asks.
                    let served_by = if answer.service_id.is_empty() {
                        member.id.clone()
                    } else {
                        answer.service_id
                    };
                    let answer = Answer {
                        response: answer.text,
                        model_used: answer.model,
                        tokens_used: answer.tokens_used,
                        served_by,
                        usage: answer.usage,
                        completion: answer.completion.map(Arc::new),
                        stream: None,
                    };
                    return (Ok(answer), false);
                }
                Ok(Reply::Stream(stream)) => {
                    let answer = self.live(picked, req, stream, instance_guard, call_started);
                    return (Ok(answer), false);
                }
                Err(error) => error,
            };
            let client_error = error.is_client_error();
            if let Some(guard) = instance_guard {
                if client_error {
                    guard.ignore();
                } else {
                    guard.failure();
                }
            }
            // A refused request says the instance is up and answering.
            self.record_passive(member, client_error);
            let model = self.model_of(member, req);
            self.observer.attempt(&member.id, &model, Err(&error), took);
            req.log.record(&member.id, &error);
            if client_error {
                drop(picked);
                // A prompt too long for the model, or content the provider refuses, fails
                // the same way on this model everywhere. Other refusals may be particular
                // to an instance (a smaller MAX_TOKENS): another untried one gets the
                // request, at once and outside the retry budget; only when none is left is
                // the refusal the client's.
                let final_refusal = error.is_context_length() || error.is_content_policy();
                tries.refusal = Some(error.message());
                let untried = Selection {
                    respect_breakers: true,
                    avoid_tried: true,
                };
                let another = !final_refusal
                    && tries.attempts < self.settings.retry.max_attempts
                    && endpoints
                        .iter()
                        .any(|e| self.accepts(e.value(), untried, &tries));
                if another {
                    continue;
                }
                return (Err(ProviderError::Client(error.message())), false);
            }
            tries.refusal = None;
            tracing::debug!(pool = %self.settings.name, request_id = %req.request_id,
                instance = %member.id, %error, attempt = tries.attempts, "upstream try failed");
            if error.is_timeout() {
                tries.silent.push(member.id.clone());
            }
            if let Some(asked) = error.retry_after() {
                let now = self.clock.now();
                member.cool_down(self.origin, now + asked.min(MAX_COOLDOWN));
            }
            let id = member.id.clone();
            drop(picked);
            let Some(wait) = self.wait_before_retry(&error, &id, endpoints, &mut tries, probe)
            else {
                tries.last = Some((id, error));
                break;
            };
            tries.last = Some((id, error));
            if !self.may_retry(req, endpoints, &tries, probe, wait) {
                break;
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let throttled = tries.throttled;
        (Err(Self::exhausted(tries, started)), throttled)
    }

    /// Among instances that would take the next try but for their cooldown, the one free
    /// soonest and how long until then.
    fn soonest_cooled(
        &self,
        endpoints: &[MemberEndpoint],
        tries: &Tries,
    ) -> Option<(String, Duration)> {
        let now = self.clock.now();
        endpoints
            .iter()
            .map(|e| e.value())
            .filter(|m| {
                !tries.silent.contains(&m.id) && self.healthy(m) && self.breaker_admits(m, tries)
            })
            .filter_map(|m| {
                m.cooldown_left(self.origin, now)
                    .map(|left| (m.id.clone(), left))
            })
            .min_by_key(|(_, left)| *left)
    }

    /// One try on `member`: a whole answer within the per-try timeout, or for a stream its
    /// first token within the first-token limit; never past the request's deadline.
    async fn call(
        &self,
        member: &Member,
        req: &GatewayRequest,
        remaining: Duration,
    ) -> Result<Reply, UpstreamError> {
        if req.payload.is_stream() {
            let limit = self.settings.first_token_timeout.min(remaining);
            self.client
                .open_stream(
                    &member.url,
                    &member.protocol,
                    &req.payload,
                    limit,
                    &req.request_id,
                )
                .await
                .map(Reply::Stream)
        } else {
            let limit = self.settings.per_try_timeout.min(remaining);
            self.client
                .call(
                    &member.url,
                    &member.protocol,
                    &req.payload,
                    limit,
                    &req.request_id,
                )
                .await
                .map(Reply::Complete)
        }
    }

    /// The answer of a stream that reached its first token: the stream itself, which
    /// reports its end to `member`'s breaker, health and metrics.
    fn live(
        &self,
        picked: InFlight<Member>,
        req: &GatewayRequest,
        stream: OpenStream,
        guard: Option<BreakerGuard<'static>>,
        started: Instant,
    ) -> Answer {
        let member: &Member = &picked;
        let model = stream
            .head
            .iter()
            .find_map(|c| c.model.clone())
            .or_else(|| member.model())
            .unwrap_or_else(|| self.model_of(member, req));
        member.learn_model(&model);
        let id = member.id.clone();
        let report = StreamOutcome {
            guard,
            health: member.checked.then(|| Arc::clone(&self.health)),
            url: member.url.clone(),
            id: id.clone(),
            model: model.clone(),
            observer: Arc::clone(&self.observer),
            started,
            // The stream counts as in flight on its instance until it ends, for the balancer.
            _in_flight: picked,
        };
        let live = LiveStream::new(
            stream,
            id.clone(),
            model.clone(),
            Box::new(move |end| report.report(end)),
        );
        Answer {
            response: String::new(),
            model_used: model,
            tokens_used: 0,
            served_by: id,
            usage: None,
            completion: None,
            stream: Some(StreamSlot::new(live)),
        }
    }

    /// Tells the health tracker of an answer (or its absence), for instances it probes.
    fn record_passive(&self, member: &Member, ok: bool) {
        if member.checked {
            self.health.record_passive(&member.url, ok);
        }
    }

    /// Whether `member` passes its health checks (an endpoint always does: its breaker
    /// alone judges it).
    pub(crate) fn healthy(&self, member: &Member) -> bool {
        !member.checked || self.health.is_healthy(&member.url)
    }

    /// The wait before the next try after `error` on instance `id`, or `None` when this
    /// pool should stop trying:
    /// - a silent instance (timeout): no wait, on to another one at once;
    /// - `Retry-After`: no wait when another instance may take the try; else the wait asked
    ///   for when it is at most `max_retry_after` (the instance may then be tried again),
    ///   and otherwise stop: the next target serves;
    /// - anything else: the policy's jittered backoff.
    fn wait_before_retry(
        &self,
        error: &UpstreamError,
        id: &str,
        endpoints: &[MemberEndpoint],
        tries: &mut Tries,
        probe: bool,
    ) -> Option<Duration> {
        let backoff = self
            .settings
            .retry
            .backoff(tries.attempts.saturating_sub(1));
        let asked = match pause_after(error) {
            Pause::None => return Some(Duration::ZERO),
            Pause::Backoff => return Some(backoff),
            Pause::Asked(asked) => asked,
        };
        if self.selection(endpoints, tries, probe).is_some() {
            return Some(Duration::ZERO);
        }
        if asked <= self.settings.max_retry_after {
            tries.waited = Some(id.to_owned());
            // `Retry-After: 0` is no licence for a tight loop.
            return Some(asked.max(backoff));
        }
        tracing::debug!(pool = %self.settings.name, instance = id, retry_after_ms = asked.as_millis(),
            "Retry-After longer than we wait; moving on");
        None
    }

    /// Whether another try may follow: the policy allows one, some instance may take it,
    /// the deadline leaves time after `wait`, and the budget has a token (taken last, so
    /// no token is spent on a retry that cannot happen).
    fn may_retry(
        &self,
        req: &GatewayRequest,
        endpoints: &[MemberEndpoint],
        tries: &Tries,
        probe: bool,
        wait: Duration,
    ) -> bool {
        if !self.settings.retry.allows_another(tries.attempts) {
            return false;
        }
        if self.selection(endpoints, tries, probe).is_none() {
            return false;
        }
        let remaining = req.deadline.saturating_duration_since(Instant::now());
        if wait >= remaining {
            return false;
        }
        if !self.budget.try_withdraw() {
            tracing::debug!(pool = %self.settings.name, request_id = %req.request_id,
                "retry budget spent; not retrying");
            return false;
        }
        true
    }

    /// Picks an instance for the next try, counting it in flight until the guard drops.
    fn pick(
        &self,
        endpoints: &[MemberEndpoint],
        tries: &Tries,
        probe: bool,
    ) -> Option<(InFlight<Member>, Selection)> {
        let selection = self.selection(endpoints, tries, probe)?;
        let picked = self
            .balancer
            .pick(endpoints, |m| self.accepts(m, selection, tries))?;
        Some((picked, selection))
    }

    /// Which instances the next pick may choose from, or `None` when no instance may take
    /// the next try.
    fn selection(
        &self,
        endpoints: &[MemberEndpoint],
        tries: &Tries,
        probe: bool,
    ) -> Option<Selection> {
        let healthy = || {
            endpoints
                .iter()
                .map(|e| e.value())
                .filter(|m| self.healthy(m))
        };
        healthy().next()?;
        // Another instance when one may take the try; else the same one again (the only
        // one left: the other instances ejected, cooling down or down).
        let accepted = |selection| {
            endpoints
                .iter()
                .any(|e| self.accepts(e.value(), selection, tries))
        };
        for avoid_tried in [true, false] {
            let strict = Selection {
                respect_breakers: true,
                avoid_tried,
            };
            if accepted(strict) {
                return Some(strict);
            }
        }
        let avoid_tried = healthy().count() > 1;
        let relaxed = Selection {
            respect_breakers: false,
            avoid_tried,
        };
        // Design §6: a pool probe may still use an ejected instance; so may any request of
        // the breaker-guarded pool when every instance is ejected (the pool breaker bounds
        // that). A pool without a breaker (secondary) never bypasses ejection: it answers
        // "none available" at once, so a fallback behind it stays fast.
        let all_ejected = healthy().all(|m| !self.breaker_admits(m, tries));
        let may_relax = probe || (all_ejected && self.pool_breaker.is_some());
        (may_relax
            && endpoints
                .iter()
                .any(|e| self.accepts(e.value(), relaxed, tries)))
        .then_some(relaxed)
    }

    /// Whether `member` may take the next try under `selection`: never a member that fell
    /// silent for this request; not one cooling down after a `Retry-After` (unless this
    /// request waited for it).
    fn accepts(&self, member: &Member, selection: Selection, tries: &Tries) -> bool {
        if tries.silent.contains(&member.id) {
            return false;
        }
        let waited = tries.waited.as_deref() == Some(member.id.as_str());
        if !waited && selection.avoid_tried && tries.tried.contains(&member.id) {
            return false;
        }
        if !waited && member.is_cooling(self.origin, self.clock.now()) {
            return false;
        }
        if !self.healthy(member) {
            return false;
        }
        !selection.respect_breakers || self.breaker_admits(member, tries)
    }

    /// Whether `member`'s breaker would let this request's next call through.
    fn breaker_admits(&self, member: &Member, tries: &Tries) -> bool {
        !tries.refused.contains(&member.id) && member.breaker.is_call_permitted()
    }

    /// The model label of a try on `member`.
    fn model_of(&self, member: &Member, req: &GatewayRequest) -> String {
        member
            .model()
            .or_else(|| req.payload.model().map(str::to_owned))
            .unwrap_or_else(|| UNKNOWN_MODEL.to_owned())
    }

    /// The error of a request whose tries all failed, or that had none; a refusal that no
    /// other try followed stays the client's.
    fn exhausted(tries: Tries, started: Instant) -> ProviderError {
        if let Some(message) = tries.refusal {
            return ProviderError::Client(message);
        }
        match tries.last {
            Some((_, UpstreamError::Timeout(after))) if !tries.out_of_time => {
                ProviderError::Timeout { after }
            }
            _ if tries.out_of_time => ProviderError::Timeout {
                after: started.elapsed(),
            },
            Some((instance, error)) => ProviderError::Upstream(format!("{instance}: {error}")),
            None => ProviderError::NoneAvailable,
        }
    }
}

/// What a stream's end is told to: its instance's breaker, health tracker and metrics.
struct StreamOutcome {
    guard: Option<BreakerGuard<'static>>,
    health: Option<Arc<HealthTracker>>,
    url: String,
    id: String,
    model: String,
    observer: Arc<dyn UpstreamObserver>,
    started: Instant,
    _in_flight: InFlight<Member>,
}

impl StreamOutcome {
    fn report(self, end: StreamEnd) {
        let took = self.started.elapsed();
        match end {
            StreamEnd::Completed => {
                if let Some(guard) = self.guard {
                    guard.success();
                }
                if let Some(health) = &self.health {
                    health.record_passive(&self.url, true);
                }
                self.observer.attempt(&self.id, &self.model, Ok(200), took);
            }
            StreamEnd::Failed(error) => {
                if let Some(guard) = self.guard {
                    guard.failure();
                }
                if let Some(health) = &self.health {
                    health.record_passive(&self.url, false);
                }
                self.observer
                    .attempt(&self.id, &self.model, Err(&error), took);
            }
            StreamEnd::Abandoned => {
                if let Some(guard) = self.guard {
                    guard.ignore();
                }
                self.observer.abandoned(&self.id, took);
            }
        }
    }
}
