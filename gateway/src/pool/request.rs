//! [`Pool::generate`]: one request through the pool, with its tries and retries (the rules
//! are listed in the module above).

use std::sync::Arc;
use std::time::Duration;

use resilience_core::balancer::InFlight;
use resilience_core::breaker::BreakerGuard;
use resilience_core::fallback::ProviderError;
use tokio::time::Instant;

use super::members::Member;
use super::{Answer, GatewayRequest, MemberEndpoint, Pool};
use crate::upstream::UpstreamError;

/// The model label of an attempt whose instance names none and never answered.
const UNKNOWN_MODEL: &str = "unknown";

/// Which instances a pick may choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Selection {
    /// Whether instance breakers are consulted (outlier ejection) or bypassed (a pool
    /// probe, or every healthy instance ejected).
    respect_breakers: bool,
    /// Whether instances this request already tried are left out (false when a single
    /// instance is healthy: then it may be tried again).
    avoid_tried: bool,
}

/// What one request has done so far.
#[derive(Debug, Default)]
struct Tries {
    /// Instances called, in order.
    tried: Vec<String>,
    /// Instances whose breaker refused a call to this request.
    refused: Vec<String>,
    /// Calls made.
    attempts: u32,
    /// The last call's failure: the instance and the error.
    last: Option<(String, UpstreamError)>,
    /// Whether the request's deadline ended the tries.
    out_of_time: bool,
}

impl Pool {
    /// Serves `req` from this pool's instances (see the module's rules).
    ///
    /// Fails with [`ProviderError::CircuitOpen`] at once when the pool breaker is open;
    /// [`ProviderError::Client`] when an upstream refused the request itself;
    /// [`ProviderError::NoneAvailable`] when no instance could be tried;
    /// [`ProviderError::Timeout`] when the last try or the deadline ran out of time; and
    /// [`ProviderError::Upstream`] with the last failure otherwise. If the future is dropped
    /// mid-request, the pool breaker counts the request as ignored.
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
        let result = self.serve(req, probe).await;
        if let Some(guard) = guard {
            match &result {
                Ok(_) => guard.success(),
                Err(ProviderError::Client(_)) => guard.ignore(),
                Err(_) => guard.failure(),
            }
        }
        result
    }

    /// The tries of one request, after the pool breaker let it through.
    async fn serve(&self, req: &GatewayRequest, probe: bool) -> Result<Answer, ProviderError> {
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
                break;
            };
            let member: &Member = &picked;
            let breaker = Arc::clone(&member.breaker);
            let instance_guard = if selection.respect_breakers {
                match breaker.try_acquire() {
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
            let timeout = self.settings.per_try_timeout.min(remaining);
            let call_started = Instant::now();
            let result = self
                .client
                .generate(&member.url, &req.generate, timeout, &req.request_id)
                .await;
            let took = call_started.elapsed();
            let error = match result {
                Ok(answer) => {
                    if let Some(guard) = instance_guard {
                        guard.success();
                    }
                    self.health.record_passive(&member.url, true);
                    member.learn_model(&answer.model_used);
                    let model = self.model_of(member, req);
                    self.observer.attempt(&member.id, &model, Ok(200), took);
                    // The instance's own SERVICE_ID when it says it (a static URL's id is
                    // only host:port), as the lab's `served_by` asks.
                    let served_by = if answer.service_id.is_empty() {
                        member.id.clone()
                    } else {
                        answer.service_id
                    };
                    return Ok(Answer {
                        response: answer.response,
                        model_used: answer.model_used,
                        tokens_used: answer.tokens_used,
                        served_by,
                    });
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
            self.health.record_passive(&member.url, client_error);
            let model = self.model_of(member, req);
            self.observer.attempt(&member.id, &model, Err(&error), took);
            if client_error {
                let message = match &error {
                    UpstreamError::Status { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                // Instances may differ in what they accept (a smaller MAX_TOKENS): another
                // untried one gets the request, at once and outside the retry budget; only
                // when none is left is the refusal the client's.
                drop(picked);
                let untried = endpoints.iter().map(|e| e.value()).any(|m| {
                    !tries.tried.contains(&m.id)
                        && self.health.is_healthy(&m.url)
                        && self.breaker_admits(m, &tries)
                });
                if untried && tries.attempts < self.settings.retry.max_attempts {
                    continue;
                }
                return Err(ProviderError::Client(message));
            }
            tracing::debug!(pool = %self.settings.name, request_id = %req.request_id,
                instance = %member.id, %error, attempt = tries.attempts, "upstream try failed");
            let wait = self.wait_before_retry(&error, tries.attempts);
            tries.last = Some((member.id.clone(), error));
            drop(picked);
            if !self.may_retry(req, endpoints, &tries, probe, wait) {
                break;
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Err(Self::exhausted(tries, started))
    }

    /// The wait before the retry that follows `attempts` calls, the last of which failed
    /// with `error`: its `Retry-After` if it gave one, else the policy's jittered backoff;
    /// never more than the policy's `max_delay`.
    fn wait_before_retry(&self, error: &UpstreamError, attempts: u32) -> Duration {
        let policy = &self.settings.retry;
        let wait = match error.retry_after() {
            Some(asked) => asked,
            None => policy.backoff(attempts.saturating_sub(1)),
        };
        wait.min(policy.max_delay)
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
                .filter(|m| self.health.is_healthy(&m.url))
        };
        let healthy_count = healthy().count();
        if healthy_count == 0 {
            return None;
        }
        let avoid_tried = healthy_count > 1;
        let strict = Selection {
            respect_breakers: true,
            avoid_tried,
        };
        if endpoints
            .iter()
            .any(|e| self.accepts(e.value(), strict, tries))
        {
            return Some(strict);
        }
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

    /// Whether `member` may take the next try under `selection`.
    fn accepts(&self, member: &Member, selection: Selection, tries: &Tries) -> bool {
        if selection.avoid_tried && tries.tried.contains(&member.id) {
            return false;
        }
        if !self.health.is_healthy(&member.url) {
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
            .or_else(|| req.generate.model.clone())
            .unwrap_or_else(|| UNKNOWN_MODEL.to_owned())
    }

    /// The error of a request whose tries all failed, or that had none.
    fn exhausted(tries: Tries, started: Instant) -> ProviderError {
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
