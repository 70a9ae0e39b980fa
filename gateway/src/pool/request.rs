//! [`Pool::generate`]: one request through the pool. The decisions — which instance, after
//! what wait, or give up with which error — are `resilience_core::policy::AttemptPlan`'s;
//! this file executes them: the pool breaker, the pick, the call, and the reports of every
//! try to the instance's breaker, health and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use resilience_core::balancer::InFlight;
use resilience_core::breaker::{BreakerGuard, Outcome};
use resilience_core::fallback::ProviderError;
use resilience_core::health::HealthTracker;
use resilience_core::policy::continuation::{PrefillMode, Resume, is_prefill_refusal, resume_with};
use resilience_core::policy::{AttemptFailure, AttemptPlan, Candidate, Step, cooldown};
use tokio::time::Instant;

use super::live::{LiveStream, StreamEnd};
use super::members::Member;
use super::{GatewayRequest, MemberEndpoint, Pool, UpstreamObserver};
use crate::answer::{Answer, WholeAnswer};
use crate::telemetry;
use crate::upstream::{Completed, OpenStream, Tags, UpstreamError};
use http_edge::otel::{self, Kind};
use http_edge::trace::TraceParent;

/// The model label of an attempt whose instance names none and never answered.
const UNKNOWN_MODEL: &str = "unknown";

/// What a successful try gave.
enum Reply {
    Complete(Completed),
    /// A stream; for a continuation, how it was asked for.
    Stream(OpenStream, Option<Resume>),
}

impl Pool {
    /// Serves `req` from this pool's instances (see the module's rules).
    ///
    /// Fails with [`ProviderError::CircuitOpen`] at once when the pool breaker is open;
    /// otherwise with the plan's final error: [`ProviderError::Client`] when an upstream
    /// refused the request itself, [`ProviderError::NoneAvailable`] when no instance could
    /// be tried, [`ProviderError::Timeout`] when the last try or the deadline ran out of
    /// time, [`ProviderError::Upstream`] with the last failure otherwise. If the future is
    /// dropped mid-request, the pool breaker counts the request as ignored. A stream counts
    /// as a success for the pool breaker once its first token arrived.
    pub async fn generate(&self, req: &GatewayRequest) -> Result<Answer, ProviderError> {
        let guard = match &self.pool_breaker {
            Some(breaker) => match breaker.try_acquire() {
                Ok(guard) => Some(guard),
                Err(rejection) => {
                    tracing::debug!(pool = %self.settings.name, request_id = %req.request_id,
                        reason = rejection.reason(), "pool breaker refused the request");
                    telemetry::breaker_rejected(req, breaker.name(), rejection.reason());
                    return Err(ProviderError::CircuitOpen);
                }
            },
            None => None,
        };
        let probe = guard.as_ref().is_some_and(BreakerGuard::is_probe);
        let started = Instant::now();
        let result = self.serve(req, probe).await;
        if let (Some(guard), Some(breaker)) = (guard, &self.pool_breaker) {
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(exhausted) => exhausted.breaker_outcome(),
            };
            guard.record(outcome);
            self.observer
                .breaker_call(breaker.name(), outcome, started.elapsed());
        }
        result.map_err(ProviderError::from)
    }

    /// The tries of one request, after the pool breaker let it through: the plan's steps,
    /// executed.
    async fn serve(
        &self,
        req: &GatewayRequest,
        probe: bool,
    ) -> Result<Answer, resilience_core::policy::Exhausted> {
        let members = self.members_for(&self.discovery.snapshot());
        // A continuation never goes back to an instance whose stream broke in the request.
        let others: Vec<MemberEndpoint>;
        let endpoints = match &req.continuation {
            Some(continuation) if !continuation.avoid.is_empty() => {
                others = members
                    .endpoints
                    .iter()
                    .filter(|e| !continuation.avoid.contains(&e.value().id))
                    .cloned()
                    .collect();
                others.as_slice()
            }
            _ => members.endpoints.as_slice(),
        };
        let now = || Instant::now().into_std();
        let mut plan = AttemptPlan::new(
            &self.plan,
            &self.budget,
            probe,
            now(),
            req.deadline.into_std(),
        );
        let mut candidates: Vec<Candidate<'_>> = Vec::with_capacity(endpoints.len());
        loop {
            self.candidates(endpoints, &mut candidates);
            let (selection, within) = match plan.next(now(), &candidates) {
                Step::Try { selection, within } => (selection, within),
                Step::Wait(wait) => {
                    self.wait(wait).await;
                    continue;
                }
                Step::GiveUp(exhausted) => return Err(exhausted),
            };
            let Some(picked) = self
                .balancer
                .pick(endpoints, |m| plan.eligible(&self.candidate(m), selection))
            else {
                match plan.none_picked(now(), &candidates) {
                    Step::Wait(wait) => {
                        self.wait(wait).await;
                        continue;
                    }
                    Step::GiveUp(exhausted) => return Err(exhausted),
                    Step::Try { .. } => continue,
                }
            };
            let member: &Member = &picked;
            let instance_guard = if selection.respect_breakers {
                match member.breaker.try_acquire_owned() {
                    Ok(guard) => Some(guard),
                    Err(rejection) => {
                        // It closed its last probe slot since the pick: choose again.
                        telemetry::breaker_rejected(req, &member.breaker_label, rejection.reason());
                        plan.breaker_refused(&member.id);
                        continue;
                    }
                }
            } else {
                None
            };
            plan.attempt_started(&member.id);
            req.count_try();
            let call_started = Instant::now();
            let mut span = otel::start("upstream.attempt", Kind::Client, Some(req.trace));
            span.set_with("instance", || member.id.clone());
            span.set_with("pool", || self.settings.name.clone());
            let error = match self.call(member, req, within, span.context()).await {
                Ok(Reply::Complete(answer)) => {
                    return Ok(self.complete(member, req, answer, instance_guard, call_started));
                }
                Ok(Reply::Stream(stream, resumed)) => {
                    let live = self.live(picked, req, stream, instance_guard, call_started);
                    return Ok(Answer::Stream(
                        live.resumed(resumed, Arc::clone(&self.budget)),
                    ));
                }
                Err(error) => error,
            };
            span.error(|| error.to_string());
            drop(span);
            let failure = self.failed(member, req, &error, instance_guard, call_started);
            drop(picked);
            self.candidates(endpoints, &mut candidates);
            plan.attempt_failed(failure, now(), &candidates);
        }
    }

    /// Waits `wait` before the next try, counted as queued in the pool meanwhile.
    async fn wait(&self, wait: Duration) {
        let _queued = Queued::enter(&self.queued);
        tokio::time::sleep(wait).await;
    }

    /// A failed try on `member`, told to its breaker, health, metrics and cooldown; the
    /// failure as the plan reads it.
    fn failed(
        &self,
        member: &Member,
        req: &GatewayRequest,
        error: &UpstreamError,
        guard: Option<BreakerGuard<'static>>,
        started: Instant,
    ) -> AttemptFailure {
        let failure = error.failure(&member.id);
        let took = started.elapsed();
        if let Some(guard) = guard {
            let outcome = failure.class.breaker_outcome();
            guard.record(outcome);
            self.observer
                .breaker_call(&member.breaker_label, outcome, took);
        }
        self.record_passive(member, failure.class.says_target_healthy());
        let model = self.model_of(member, req);
        self.observer.attempt(&member.id, &model, Err(error), took);
        tracing::debug!(pool = %self.settings.name, request_id = %req.request_id,
            instance = %member.id, %error, "upstream try failed");
        if let Some(cooldown) = cooldown(&failure) {
            member.cool_down(self.origin, self.clock.now() + cooldown);
        }
        failure
    }

    /// The members as the plan sees them now, into `into` (one buffer per request).
    fn candidates<'m>(&self, endpoints: &'m [MemberEndpoint], into: &mut Vec<Candidate<'m>>) {
        into.clear();
        into.extend(endpoints.iter().map(|e| self.candidate(e.value())));
    }

    /// One member as the plan sees it now.
    fn candidate<'m>(&self, member: &'m Member) -> Candidate<'m> {
        Candidate {
            id: &member.id,
            healthy: self.healthy(member),
            admits: member.breaker.is_call_permitted(),
            cooling: member.cooldown_left(self.origin, self.clock.now()),
        }
    }

    /// A whole answer from `member`: reported to its breaker, health and metrics.
    fn complete(
        &self,
        member: &Member,
        req: &GatewayRequest,
        answer: Completed,
        guard: Option<BreakerGuard<'static>>,
        started: Instant,
    ) -> Answer {
        let took = started.elapsed();
        if let Some(guard) = guard {
            guard.success();
            self.observer
                .breaker_call(&member.breaker_label, Outcome::Success, took);
        }
        self.record_passive(member, true);
        member.learn_model(&answer.model);
        let model = self.model_of(member, req);
        self.observer.attempt(&member.id, &model, Ok(200), took);
        // The instance's own SERVICE_ID when it says it (a static URL's id is only
        // host:port), as the lab's `served_by` asks.
        let served_by = if answer.service_id.is_empty() {
            member.id.clone()
        } else {
            answer.service_id
        };
        Answer::Whole(WholeAnswer {
            response: answer.text,
            model_used: answer.model,
            tokens_used: answer.tokens_used,
            served_by,
            usage: answer.usage,
            completion: answer.completion.map(Arc::new),
        })
    }

    /// One try on `member`: a whole answer within the per-try timeout, or for a stream its
    /// first token within the first-token limit; never past the request's deadline. The
    /// try sends `trace` (its own span as the parent) as `traceparent`.
    async fn call(
        &self,
        member: &Member,
        req: &GatewayRequest,
        remaining: Duration,
        trace: TraceParent,
    ) -> Result<Reply, UpstreamError> {
        let tags = Tags {
            request_id: &req.request_id,
            traceparent: Some(trace),
        };
        if req.payload.is_stream() {
            let limit = self.settings.first_token_timeout.min(remaining);
            let Some(continuation) = &req.continuation else {
                return self
                    .client
                    .open_stream(&member.upstream, &req.payload, limit, tags)
                    .await
                    .map(|stream| Reply::Stream(stream, None));
            };
            let refused = self.prefill_refused.load(Ordering::Relaxed);
            if resume_with(self.settings.prefill, refused) == Resume::Prefill {
                let prefilled = req
                    .payload
                    .with_prefill(&continuation.delivered, continuation.delivered_tokens);
                let error = match self
                    .client
                    .open_stream(&member.upstream, &prefilled, limit, tags)
                    .await
                {
                    Ok(stream) => return Ok(Reply::Stream(stream, Some(Resume::Prefill))),
                    Err(error) => error,
                };
                let failure = error.failure(&member.id);
                if self.settings.prefill != PrefillMode::Auto
                    || !is_prefill_refusal(failure.status, failure.class)
                {
                    return Err(error);
                }
                // Remembered: this target is asked afresh from now on, and now.
                self.prefill_refused.store(true, Ordering::Relaxed);
                tracing::warn!(pool = %self.settings.name, instance = %member.id,
                    request_id = %req.request_id,
                    "the target refused an assistant prefill; restarting answers there instead");
                req.count_try();
            }
            let limit = limit.min(req.deadline.saturating_duration_since(Instant::now()));
            self.client
                .open_stream(&member.upstream, &req.payload, limit, tags)
                .await
                .map(|stream| Reply::Stream(stream, Some(Resume::Restart)))
        } else {
            let limit = self.settings.per_try_timeout.min(remaining);
            self.client
                .call(&member.upstream, &req.payload, limit, tags)
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
    ) -> LiveStream {
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
            in_flight: picked,
        };
        LiveStream::new(stream, id, model, Box::new(move |end| report.report(end)))
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

    /// The model label of a try on `member`.
    fn model_of(&self, member: &Member, req: &GatewayRequest) -> String {
        member
            .model()
            .or_else(|| req.payload.model().map(str::to_owned))
            .unwrap_or_else(|| UNKNOWN_MODEL.to_owned())
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
    /// The stream's place on its instance (and the instance's breaker label).
    in_flight: InFlight<Member>,
}

impl StreamOutcome {
    fn report(self, end: StreamEnd) {
        let took = self.started.elapsed();
        let breaker = self.in_flight.breaker_label.as_str();
        match end {
            StreamEnd::Completed => {
                if let Some(guard) = self.guard {
                    guard.success();
                    self.observer.breaker_call(breaker, Outcome::Success, took);
                }
                if let Some(health) = &self.health {
                    health.record_passive(&self.url, true);
                }
                self.observer.attempt(&self.id, &self.model, Ok(200), took);
            }
            StreamEnd::Failed(error) => {
                if let Some(guard) = self.guard {
                    guard.failure();
                    self.observer.breaker_call(breaker, Outcome::Failure, took);
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

/// A request counted as queued in its pool until dropped (also when the request is).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::Relaxed);
        Self(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
