//! An upstream pool: the instances of one tier, each behind its own breaker (outlier
//! ejection), and the pool breaker in front of them all (the lab's "circuit breaker").
//!
//! - `members`: the pool's view of discovery — one balancer [`Endpoint`] per instance of the
//!   tier, kept (with its in-flight count) across discovery refreshes, and one instance
//!   breaker per instance id, kept for as long as it remembers something.
//! - `request`: [`Pool::generate`], the request path. It asks the pool breaker first (OPEN
//!   answers [`ProviderError::CircuitOpen`] at once, without a call or a wait), then
//!   executes the steps of a `resilience_core::policy::AttemptPlan`, where every rule of
//!   which instance is tried, after what wait and when the pool gives up is written and
//!   tested. Power-of-two-choices picks among the instances the plan accepts; each try is
//!   bounded by `min(per_try_timeout, time left before the deadline)` (for a stream: the
//!   first-token limit). The request is one outcome of the pool breaker, as the plan's
//!   final error says (`Exhausted::breaker_outcome`).
//! - `live`: a stream past its first token, which reports its end to the instance's breaker,
//!   health and metrics.
//!
//! Every try is told to the [`UpstreamObserver`] (metrics), to the instance's breaker and to
//! the health tracker as a passive signal. No lock is held across an await.

mod live;
mod members;
mod request;

pub use live::{LiveStream, StreamEnd};
pub use resilience_core::policy::continuation::Resume;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http_edge::trace::{SpanId, TraceParent};
use resilience_core::SharedClock;
use resilience_core::balancer::{Endpoint, LoadBalancer, Strategy};
use resilience_core::breaker::{
    Breaker, BreakerConfig, BreakerSnapshot, Outcome, StateKind, TransitionHook,
};
use resilience_core::discovery::DiscoveryClient;
use resilience_core::fallback::{BoxFuture, FallbackProvider, ProviderError};
use resilience_core::health::HealthTracker;
use resilience_core::policy::PlanSettings;
use resilience_core::policy::continuation::PrefillMode;
use resilience_core::retry::{RetryBudget, RetryPolicy};
use serde::Serialize;

use self::members::{Member, Members};
use crate::answer::Answer;
use crate::upstream::{Payload, Protocol, UpstreamClient, UpstreamError};

/// Told of every try on an instance (for metrics and logs); called on the request path, so
/// it must be quick and must not block.
pub trait UpstreamObserver: Send + Sync {
    /// One attempt on one instance: its id and model, the outcome (Ok(status) or the
    /// error), how long it took.
    fn attempt(
        &self,
        instance_id: &str,
        model: &str,
        outcome: Result<u16, &UpstreamError>,
        took: Duration,
    );

    /// A stream that reached the client and was left by it before its end: says nothing
    /// about the instance.
    fn abandoned(&self, _instance_id: &str, _took: Duration) {}

    /// A call a breaker let through ended after `took` with `outcome`, as the breaker
    /// recorded it: `breaker` is its label in `circuit_breaker_state` (`instance:<id>`,
    /// `endpoint:<id>`, or the pool breaker's name). A try no breaker guarded (every
    /// instance ejected, the breakers bypassed) is not told.
    fn breaker_call(&self, _breaker: &str, _outcome: Outcome, _took: Duration) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl UpstreamObserver for NoopObserver {
    fn attempt(&self, _: &str, _: &str, _: Result<u16, &UpstreamError>, _: Duration) {}
}

/// How one pool behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    /// The pool's name (`primary`, `secondary`…): the provider name in the fallback chain.
    pub name: String,
    /// The instances' `tier` label this pool serves (when it serves discovered instances).
    pub tier: String,
    /// A fixed OpenAI-compatible endpoint served instead of discovered instances.
    pub endpoint: Option<EndpointSpec>,
    /// The longest one try may take.
    pub per_try_timeout: Duration,
    /// The longest a stream may take to its first token (its try's bound).
    pub first_token_timeout: Duration,
    /// The longest `Retry-After` waited for within a request; a longer one moves on at once.
    pub max_retry_after: Duration,
    /// Attempts and backoff between them.
    pub retry: RetryPolicy,
    /// The configuration of every instance breaker (outlier ejection). Should be valid; an
    /// invalid one is replaced by [`BreakerConfig::default`] with an error logged.
    pub instance_breaker: BreakerConfig,
    /// Whether the target continues an assistant prefill (how a broken stream's rest is
    /// asked of it).
    pub prefill: PrefillMode,
}

/// A fixed upstream target: an OpenAI-compatible endpoint and one of its models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Its id in metrics, logs and `x-served-by` (the breaker is keyed by it).
    pub id: String,
    /// The base URL (`https://api.openai.com/v1`, `http://127.0.0.1:11434/v1`…).
    pub url: String,
    /// The upstream model and API key.
    pub protocol: Protocol,
}

/// A request as the pool sees it.
#[derive(Debug)]
pub struct GatewayRequest {
    /// What to send.
    pub payload: Payload,
    /// The request id, passed upstream as `x-request-id`.
    pub request_id: String,
    /// When the whole request must be over (`REQUEST_TIMEOUT` after it arrived).
    pub deadline: tokio::time::Instant,
    /// The request's trace: each try is a child span of it and sends `traceparent`.
    pub trace: TraceParent,
    /// Tries made on upstream instances so far, over every pool and tier.
    tries: AtomicU32,
    /// Set when this asks for the rest of a streamed answer that broke.
    pub continuation: Option<Arc<Continuation>>,
}

/// What a request for the rest of a broken stream carries besides the request itself
/// (`routes/relay.rs` makes it; each pool decides how to ask, `resilience_core::policy::
/// continuation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    /// The text the client already has.
    pub delivered: String,
    /// Its tokens, as counted by the relay (the chunks that carried text).
    pub delivered_tokens: u32,
    /// The instances whose streams broke in this request: not asked again.
    pub avoid: Vec<String>,
}

impl Clone for GatewayRequest {
    fn clone(&self) -> Self {
        Self {
            payload: self.payload.clone(),
            request_id: self.request_id.clone(),
            deadline: self.deadline,
            trace: self.trace,
            tries: AtomicU32::new(self.tries()),
            continuation: self.continuation.clone(),
        }
    }
}

impl GatewayRequest {
    /// A request for `payload` ending `timeout` from now, in a trace of its own.
    pub fn new(payload: Payload, request_id: impl Into<String>, timeout: Duration) -> Self {
        Self {
            payload,
            request_id: request_id.into(),
            deadline: tokio::time::Instant::now() + timeout,
            trace: TraceParent::new_trace(SpanId::random()),
            tries: AtomicU32::new(0),
            continuation: None,
        }
    }

    /// The same request in the trace `trace` (the request span's context).
    pub fn in_trace(mut self, trace: TraceParent) -> Self {
        self.trace = trace;
        self
    }

    /// Tries made on upstream instances so far.
    pub fn tries(&self) -> u32 {
        self.tries.load(Ordering::Relaxed)
    }

    /// Tries beyond the first (the access log's `retries`).
    pub fn retries(&self) -> u32 {
        self.tries().saturating_sub(1)
    }

    /// Counts a try.
    pub(crate) fn count_try(&self) {
        self.tries.fetch_add(1, Ordering::Relaxed);
    }
}

/// One instance of the pool as `/health` and `/admin/status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    /// The instance id.
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// Its tier.
    pub tier: String,
    /// Its `model` label, or else the model it last answered with.
    pub model: Option<String>,
    /// Whether the health tracker lets it take traffic.
    pub healthy: bool,
    /// Its instance breaker's state.
    pub circuit_state: StateKind,
}

/// How loaded a pool is now, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolLoad {
    /// Calls in flight on its instances (picked and not finished; a stream until its end).
    pub in_flight: usize,
    /// Requests waiting in the pool for their next try (a backoff, a `Retry-After`, every
    /// instance cooling down): the only queue the gateway has.
    pub queued: usize,
}

/// An upstream pool; share it as `Arc<Pool>`.
pub struct Pool {
    settings: PoolSettings,
    /// The retry rules of the pool's requests, from `settings`.
    plan: PlanSettings,
    discovery: Arc<DiscoveryClient>,
    health: Arc<HealthTracker>,
    budget: Arc<RetryBudget>,
    client: UpstreamClient,
    pool_breaker: Option<Arc<Breaker>>,
    clock: SharedClock,
    on_transition: TransitionHook,
    observer: Arc<dyn UpstreamObserver>,
    balancer: LoadBalancer,
    /// The origin of members' cooldown times.
    origin: std::time::Instant,
    /// The endpoints of the current discovery generation; read without a lock.
    members: ArcSwap<Members>,
    /// Instance breakers by id; locked only to rebuild `members` or to list every breaker.
    breakers: Mutex<BTreeMap<String, Arc<Breaker>>>,
    /// Requests waiting for their next try ([`PoolLoad::queued`]).
    queued: AtomicUsize,
    /// Whether the target refused an assistant prefill (with [`PrefillMode::Auto`]).
    prefill_refused: AtomicBool,
}

impl Pool {
    /// A pool over the instances of `settings.tier` in `discovery`'s snapshots.
    ///
    /// `clock` and `on_transition` are given to every instance breaker (named
    /// `instance:<id>`); `pool_breaker`, when given, is the lab's "circuit breaker", owned
    /// and reset by the caller.
    #[expect(
        clippy::too_many_arguments,
        reason = "the wiring of the gateway, in one place"
    )]
    pub fn new(
        mut settings: PoolSettings,
        discovery: Arc<DiscoveryClient>,
        health: Arc<HealthTracker>,
        budget: Arc<RetryBudget>,
        client: UpstreamClient,
        pool_breaker: Option<Arc<Breaker>>,
        clock: SharedClock,
        on_transition: TransitionHook,
        observer: Arc<dyn UpstreamObserver>,
    ) -> Self {
        if let Err(error) = settings.instance_breaker.validate() {
            tracing::error!(pool = %settings.name, %error,
                "invalid instance breaker configuration; using the defaults");
            settings.instance_breaker = BreakerConfig::default();
        }
        let origin = clock.now();
        let plan = PlanSettings {
            retry: settings.retry.clone(),
            max_retry_after: settings.max_retry_after,
            bypass_when_all_ejected: pool_breaker.is_some(),
        };
        Self {
            settings,
            plan,
            discovery,
            health,
            budget,
            client,
            pool_breaker,
            on_transition,
            observer,
            clock,
            balancer: LoadBalancer::new(Strategy::PowerOfTwoChoices),
            origin,
            members: ArcSwap::from_pointee(Members::default()),
            breakers: Mutex::new(BTreeMap::new()),
            queued: AtomicUsize::new(0),
            prefill_refused: AtomicBool::new(false),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The settings the pool runs with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The pool breaker, if the pool has one.
    pub fn pool_breaker(&self) -> Option<&Arc<Breaker>> {
        self.pool_breaker.as_ref()
    }

    /// The instances of this pool's tier in the current discovery snapshot, with health and breaker state.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.current()
            .endpoints
            .iter()
            .map(|endpoint| {
                let member = endpoint.value();
                InstanceView {
                    id: member.id.clone(),
                    url: member.url.clone(),
                    tier: member.tier.clone(),
                    model: member.model(),
                    healthy: self.healthy(member),
                    circuit_state: member.breaker.state(),
                }
            })
            .collect()
    }

    /// Per-instance breaker snapshots, keyed by instance id.
    pub fn breaker_snapshots(&self) -> BTreeMap<String, BreakerSnapshot> {
        self.current()
            .endpoints
            .iter()
            .map(|endpoint| {
                let member = endpoint.value();
                (member.id.clone(), member.breaker.snapshot())
            })
            .collect()
    }

    /// Per-instance breaker snapshots, each under its label in `circuit_breaker_state`
    /// (`instance:<id>`, or `endpoint:<id>` for an endpoint pool).
    pub fn labelled_breaker_snapshots(&self) -> Vec<(String, BreakerSnapshot)> {
        self.current()
            .endpoints
            .iter()
            .map(|endpoint| {
                let member = endpoint.value();
                (member.breaker_label.clone(), member.breaker.snapshot())
            })
            .collect()
    }

    /// How loaded the pool is now.
    pub fn load(&self) -> PoolLoad {
        PoolLoad {
            in_flight: self.current().endpoints.iter().map(|e| e.in_flight()).sum(),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }

    /// Resets every instance breaker (the pool breaker is reset by its owner).
    pub fn reset_instance_breakers(&self) {
        let breakers: Vec<Arc<Breaker>> = self.lock_breakers().values().cloned().collect();
        for breaker in breakers {
            breaker.reset();
        }
    }

    /// The current members' endpoints, in discovery order (for tests and diagnostics).
    fn current(&self) -> Arc<Members> {
        self.members_for(&self.discovery.snapshot())
    }
}

impl FallbackProvider<GatewayRequest, Answer> for Pool {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn call<'a>(&'a self, req: &'a GatewayRequest) -> BoxFuture<'a, Result<Answer, ProviderError>> {
        Box::pin(self.generate(req))
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("settings", &self.settings)
            .field("pool_breaker", &self.pool_breaker)
            .field("members", &self.members.load().endpoints.len())
            .finish_non_exhaustive()
    }
}

/// The endpoint type the balancer picks from.
type MemberEndpoint = Arc<Endpoint<Member>>;
