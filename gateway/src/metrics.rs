//! Prometheus metrics: the seed's golden signals (answers, latency, errors with their
//! `error_code`), tokens, breaker states, rates and call durations, fallback use, discovery,
//! load per pool, resource utilization, and the process's CPU, memory and file descriptors.
//! Handles are resolved per label set by the prometheus crate (a hash and a read lock, no
//! allocation); label values are bounded (`labels`: statuses as static strings, models as
//! route names); gauges that mirror state are set at scrape time ([`Metrics::render`]).
//!
//! - `labels`: bounded label values; `resources`: the process's CPU and memory use;
//!   `signals`: the golden signals' running totals, for `/admin/signals` and the status page.

mod labels;
mod resources;
mod signals;
#[cfg(test)]
mod tests;

pub use labels::{NO_STATUS, OTHER_MODEL, error_code, status_label};
pub use signals::Totals;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use llm_api::openai::Usage;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use resilience_core::breaker::{BreakerSnapshot, Outcome};

use crate::pool::{PoolLoad, UpstreamObserver};
use crate::upstream::UpstreamError;

/// The upper bounds of `llm_request_duration_seconds`' buckets, in seconds.
pub const LATENCY_BUCKETS_S: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// The `service` of the gateway's own series (its errors, its resource utilization).
const GATEWAY: &str = "gateway";

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    upstream_attempts: IntCounterVec,
    fallback: IntCounterVec,
    /// Requests in flight through the gateway.
    pub in_flight: IntGauge,
    breaker_state: IntGaugeVec,
    available: IntGauge,
    first_token: HistogramVec,
    stream_events: IntCounterVec,
    /// `llm_stream_continuations_total{outcome,reason}`.
    continuations: IntCounterVec,
    edge: EdgeMetrics,
    identity: IdentityMetrics,
    /// `llm_tokens_processed_total{service,model,operation}`.
    tokens: IntCounterVec,
    breakers: BreakerMetrics,
    pools: PoolMetrics,
    resources: ResourceMetrics,
    /// One scrape at a time resets and sets the state gauges.
    rendering: Mutex<()>,
}

/// The breakers' rolling windows and the calls they let through.
struct BreakerMetrics {
    failure_rate: GaugeVec,
    slow_call_rate: GaugeVec,
    window_calls: IntGaugeVec,
    call_duration: HistogramVec,
}

/// Each pool's load.
struct PoolMetrics {
    in_flight: IntGaugeVec,
    queue_length: IntGaugeVec,
}

/// `llm_resource_utilization{service="gateway",resource_type}`, set at scrape time.
struct ResourceMetrics {
    utilization: GaugeVec,
    process: resources::ProcessUse,
}

/// What a scrape reads of the gateway's state, for the gauges set at scrape time.
#[derive(Debug, Default)]
pub struct Scrape<'a> {
    /// Every breaker under its label (`llm-service`, `instance:<id>`, `endpoint:<id>`).
    pub breakers: &'a [(String, BreakerSnapshot)],
    /// Instances passing health checks.
    pub available: usize,
    /// Every pool by name, with its load.
    pub pools: &'a [(&'a str, PoolLoad)],
    /// `MAX_CONCURRENT_REQUESTS`.
    pub max_in_flight: usize,
}

/// Authentication refusals and rate limits.
struct IdentityMetrics {
    /// Requests refused by authentication, by reason.
    auth_refused: IntCounterVec,
    /// Requests refused by a rate limit, by tier and limit.
    rate_limited: IntCounterVec,
    /// The rate limiter's active source (1) among all (0), set at scrape time.
    limiter_active: IntGaugeVec,
}

/// The client side of the edge: connections and request bodies, copied from
/// [`http_edge::Connections`] and [`http_edge::Uploads`] at scrape time.
struct EdgeMetrics {
    connections: IntGauge,
    max_connections: IntGauge,
    closed: IntCounterVec,
    uploads: IntGauge,
    refused_uploads: IntCounterVec,
    /// One scrape at a time adds the counters' growth.
    syncing: std::sync::Mutex<()>,
}

/// One answer, as [`Metrics::answered`] counts it.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The instance, endpoint or `fallback_manager` that answered.
    pub service: &'a str,
    /// The model named in the answer.
    pub model: &'a str,
    /// The HTTP status.
    pub status: u16,
    /// The tier that answered.
    pub tier: &'a str,
    /// `generate` or `chat_completions`.
    pub endpoint: &'a str,
    /// Time to answer (for a stream: to its first byte).
    pub took: Duration,
    /// The bounded `model` label of the tokens (a route's name, or `other`).
    pub model_label: &'a str,
    /// The tokens of a whole answer from a live tier (a stream's are counted when it ends,
    /// a cache or template answer's not at all).
    pub tokens: Option<Usage>,
}

impl Metrics {
    /// Fresh metrics in their own registry, with the process collector.
    pub fn new() -> Result<Self, prometheus::Error> {
        let (requests, duration, errors) = golden_signals()?;
        let (upstream_attempts, fallback) = upstreams_and_tiers()?;
        let (in_flight, breaker_state, available) = state_gauges()?;
        let (first_token, stream_events, continuations) = stream_metrics()?;
        let edge = edge_metrics()?;
        let identity = identity_metrics()?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "llm_tokens_processed_total",
                "Tokens of the answers from live upstreams, by answering service, model (a \
                 configured route's name, or `other` for a model no route is named after) and \
                 operation (prompt: the request's tokens, completion: the answer's), as the \
                 upstream counted them, else the gateway's estimate.",
            ),
            &["service", "model", "operation"],
        )?;
        let metrics = Self {
            registry: Registry::new(),
            requests,
            duration,
            errors,
            upstream_attempts,
            fallback,
            in_flight,
            breaker_state,
            available,
            first_token,
            stream_events,
            continuations,
            edge,
            identity,
            tokens,
            breakers: breaker_metrics()?,
            pools: pool_metrics()?,
            resources: resource_metrics()?,
            rendering: Mutex::new(()),
        };
        metrics.register()?;
        metrics.seed_series();
        #[cfg(target_os = "linux")]
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// Registers every family in the registry.
    fn register(&self) -> Result<(), prometheus::Error> {
        for collector in [
            Box::new(self.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.duration.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.upstream_attempts.clone()),
            Box::new(self.fallback.clone()),
            Box::new(self.in_flight.clone()),
            Box::new(self.breaker_state.clone()),
            Box::new(self.available.clone()),
            Box::new(self.first_token.clone()),
            Box::new(self.stream_events.clone()),
            Box::new(self.continuations.clone()),
            Box::new(self.edge.connections.clone()),
            Box::new(self.edge.max_connections.clone()),
            Box::new(self.edge.closed.clone()),
            Box::new(self.edge.uploads.clone()),
            Box::new(self.edge.refused_uploads.clone()),
            Box::new(self.identity.auth_refused.clone()),
            Box::new(self.identity.rate_limited.clone()),
            Box::new(self.identity.limiter_active.clone()),
            Box::new(self.tokens.clone()),
            Box::new(self.breakers.failure_rate.clone()),
            Box::new(self.breakers.slow_call_rate.clone()),
            Box::new(self.breakers.window_calls.clone()),
            Box::new(self.breakers.call_duration.clone()),
            Box::new(self.pools.in_flight.clone()),
            Box::new(self.pools.queue_length.clone()),
            Box::new(self.resources.utilization.clone()),
        ] {
            self.registry.register(collector)?;
        }
        Ok(())
    }

    /// Series that exist from the start, at 0, so dashboards and alerts see them before
    /// the first error of each kind.
    fn seed_series(&self) {
        for (error_type, error_code) in [
            ("validation", "422"),
            ("overloaded", "503"),
            ("exhausted", "503"),
            ("rejected_upstream", "422"),
        ] {
            self.errors
                .with_label_values(&[GATEWAY, error_type, error_code]);
        }
        for tier in ["primary", "secondary", "cache", "template"] {
            self.fallback.with_label_values(&[tier]);
        }
    }

    /// One answer to a client on `endpoint` (`generate`, `chat_completions`).
    pub fn answered(&self, answer: Answered<'_>) {
        self.requests
            .with_label_values(&[answer.service, answer.model, status_label(answer.status)])
            .inc();
        self.duration
            .with_label_values(&[answer.service, answer.model, answer.endpoint])
            .observe(answer.took.as_secs_f64());
        self.fallback.with_label_values(&[answer.tier]).inc();
        if let Some(usage) = answer.tokens {
            self.tokens_processed(answer.service, answer.model_label, usage);
        }
    }

    /// Tokens `service` processed for a request labelled `model` (a route's name or
    /// [`OTHER_MODEL`], never a client's string: see `Routes::model_label`).
    pub fn tokens_processed(&self, service: &str, model: &str, usage: Usage) {
        for (operation, tokens) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            self.tokens
                .with_label_values(&[service, model, operation])
                .inc_by(u64::from(tokens));
        }
    }

    /// A stream's first token reached the gateway this long after the try began.
    pub fn first_token(&self, service: &str, after: Duration) {
        self.first_token
            .with_label_values(&[service])
            .observe(after.as_secs_f64());
    }

    /// A malformed stream event was skipped.
    pub fn malformed_event(&self, service: &str) {
        self.stream_events
            .with_label_values(&[service, "malformed_skipped"])
            .inc();
    }

    /// A stream that reached the client ended: `completed`, `finalized` (no `[DONE]`),
    /// `interrupted` (cut or stalled: an error event was sent) or `abandoned` by the client.
    pub fn stream_ended(&self, service: &str, how: &str) {
        self.stream_events.with_label_values(&[service, how]).inc();
    }

    /// A stream that broke after it reached the client: `continued` (by prefill),
    /// `spliced` (restarted and spliced), or `gave_up` for `reason` (`limit`, `budget`,
    /// `mismatch`…; `none` for the other outcomes).
    pub fn stream_continuation(&self, outcome: &str, reason: &str) {
        self.continuations
            .with_label_values(&[outcome, reason])
            .inc();
    }

    /// An error the gateway answered itself (`validation`, `overloaded`, `exhausted`…),
    /// counted in the errors (its status as their `error_code`) and in the requests.
    pub fn gateway_error(&self, error_type: &str, status: u16) {
        let code = status_label(status);
        self.errors
            .with_label_values(&[GATEWAY, error_type, code])
            .inc();
        self.requests
            .with_label_values(&[GATEWAY, "none", code])
            .inc();
    }

    /// Copies the edge's connection and upload counts into their series (before a render).
    pub fn edge(&self, connections: http_edge::ConnectionStats, uploads: http_edge::UploadStats) {
        let edge = &self.edge;
        let _one_at_a_time = edge
            .syncing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        edge.connections
            .set(i64::try_from(connections.open).unwrap_or(i64::MAX));
        edge.max_connections
            .set(i64::try_from(connections.cap).unwrap_or(i64::MAX));
        for (reason, total) in http_edge::serve::CloseReason::ALL
            .iter()
            .zip(connections.closed)
        {
            let counter = edge.closed.with_label_values(&[reason.as_str()]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        edge.uploads
            .set(i64::try_from(uploads.reading).unwrap_or(i64::MAX));
        for (why, total) in [
            ("too_slow", uploads.too_slow),
            ("too_large", uploads.too_large),
            ("no_room", uploads.turned_away),
        ] {
            let counter = edge.refused_uploads.with_label_values(&[why]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// A request refused by authentication for `reason` (a bounded set of labels).
    pub fn auth_refused(&self, reason: &str) {
        self.identity
            .auth_refused
            .with_label_values(&[reason])
            .inc();
    }

    /// A request of a caller of `tier` (a configured tier) refused by its `limit`
    /// (`requests`, `tokens`, `unavailable`).
    pub fn rate_limited(&self, tier: &str, limit: &str) {
        self.identity
            .rate_limited
            .with_label_values(&[tier, limit])
            .inc();
    }

    /// The rate limiter's active source now (`memory`, `redis`, `fail_local`, `fail_open`,
    /// `fail_closed`): 1 for it, 0 for the others.
    pub fn limiter_active(&self, active: &str) {
        for source in LIMITER_SOURCES {
            self.identity
                .limiter_active
                .with_label_values(&[source])
                .set(i64::from(source == active));
        }
    }

    /// Adds the history writer's series (`db_writer_*`).
    pub fn register_history(
        &self,
        writer: &history::WriterMetrics,
    ) -> Result<(), prometheus::Error> {
        writer.register(&self.registry)
    }

    /// Renders the text exposition after setting the state gauges from `scrape` (call
    /// [`Self::edge`] first: the connections' utilization reads what it set).
    pub fn render(&self, scrape: &Scrape<'_>) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        {
            // Two scrapes at once must not interleave their resets and sets.
            let _rendering = self
                .rendering
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.set_breakers(scrape.breakers);
            self.available
                .set(i64::try_from(scrape.available).unwrap_or(i64::MAX));
            self.set_pools(scrape.pools);
            self.set_resources(scrape.max_in_flight);
            TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Every breaker's state and rolling window.
    fn set_breakers(&self, breakers: &[(String, BreakerSnapshot)]) {
        let gauges = &self.breakers;
        // Reset first: a breaker of an instance that left discovery must not linger.
        self.breaker_state.reset();
        gauges.failure_rate.reset();
        gauges.slow_call_rate.reset();
        gauges.window_calls.reset();
        for (service, snapshot) in breakers {
            let service = [service.as_str()];
            self.breaker_state
                .with_label_values(&service)
                .set(snapshot.state.as_gauge());
            let window = &snapshot.window;
            gauges
                .failure_rate
                .with_label_values(&service)
                .set(window.failure_rate);
            gauges
                .slow_call_rate
                .with_label_values(&service)
                .set(window.slow_call_rate);
            gauges
                .window_calls
                .with_label_values(&service)
                .set(i64::from(window.calls));
        }
    }

    /// Every pool's load.
    fn set_pools(&self, pools: &[(&str, PoolLoad)]) {
        let gauges = &self.pools;
        gauges.in_flight.reset();
        gauges.queue_length.reset();
        for (pool, load) in pools {
            // Add, not set: two targets may share a name (a pool and an endpoint's id).
            gauges
                .in_flight
                .with_label_values(&[*pool])
                .add(i64::try_from(load.in_flight).unwrap_or(i64::MAX));
            gauges
                .queue_length
                .with_label_values(&[*pool])
                .add(i64::try_from(load.queued).unwrap_or(i64::MAX));
        }
    }

    /// The gateway's utilization of the process's CPU and memory, of its in-flight slots
    /// (`max_in_flight`) and of its connections (as [`Self::edge`] last copied them).
    fn set_resources(&self, max_in_flight: usize) {
        let process = &self.resources.process;
        let share = |used: i64, total: i64| resources::ratio(used as f64, total as f64);
        // CPU and memory only where the platform tells them (Linux): no series otherwise.
        for (resource_type, utilization) in [
            ("cpu", process.cpu()),
            ("memory", process.memory()),
            (
                "in_flight",
                Some(share(
                    self.in_flight.get(),
                    i64::try_from(max_in_flight).unwrap_or(i64::MAX),
                )),
            ),
            (
                "connections",
                Some(share(
                    self.edge.connections.get(),
                    self.edge.max_connections.get(),
                )),
            ),
        ] {
            if let Some(utilization) = utilization {
                self.resources
                    .utilization
                    .with_label_values(&[GATEWAY, resource_type])
                    .set(utilization);
            }
        }
    }
}

/// The breakers' gauges (set at scrape time) and call durations.
fn breaker_metrics() -> Result<BreakerMetrics, prometheus::Error> {
    let failure_rate = GaugeVec::new(
        Opts::new(
            "circuit_breaker_failure_rate",
            "Failures among the calls in the breaker's rolling window, 0 to 1 (0 with no \
             calls), by breaker as circuit_breaker_state names it.",
        ),
        &["service"],
    )?;
    let slow_call_rate = GaugeVec::new(
        Opts::new(
            "circuit_breaker_slow_call_rate",
            "Calls slower than the breaker's slow-call duration among the calls in its \
             rolling window, 0 to 1 (0 with no calls), by breaker.",
        ),
        &["service"],
    )?;
    let window_calls = IntGaugeVec::new(
        Opts::new(
            "circuit_breaker_window_calls",
            "Calls counted (successes and failures) in the breaker's rolling window: the \
             denominator of its failure and slow-call rates, by breaker.",
        ),
        &["service"],
    )?;
    let call_duration = HistogramVec::new(
        HistogramOpts::new(
            "circuit_breaker_call_duration_seconds",
            "Calls a breaker let through, from its permit to the outcome it recorded, by \
             breaker and outcome (success, failure): a try on an instance for an instance's \
             breaker, a request through the pool (a stream to its first token) for the pool \
             breaker.",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
        ]),
        &["service", "outcome"],
    )?;
    Ok(BreakerMetrics {
        failure_rate,
        slow_call_rate,
        window_calls,
        call_duration,
    })
}

/// Each pool's calls in flight and requests waiting.
fn pool_metrics() -> Result<PoolMetrics, prometheus::Error> {
    Ok(PoolMetrics {
        in_flight: IntGaugeVec::new(
            Opts::new(
                "gateway_pool_in_flight",
                "Calls in flight on a pool's instances (from the pick to the answer; a stream \
                 until its end), by pool (a tier, or an endpoint's id).",
            ),
            &["pool"],
        )?,
        queue_length: IntGaugeVec::new(
            Opts::new(
                "gateway_pool_queue_length",
                "Requests waiting in a pool for their next try (a backoff, a Retry-After, \
                 every instance cooling down), by pool: the gateway's only queue (above \
                 MAX_CONCURRENT_REQUESTS it sheds, it does not queue).",
            ),
            &["pool"],
        )?,
    })
}

/// `llm_resource_utilization`.
fn resource_metrics() -> Result<ResourceMetrics, prometheus::Error> {
    let utilization = GaugeVec::new(
        Opts::new(
            "llm_resource_utilization",
            "Share of a resource in use, 0 to 1, by service and resource_type: cpu (the \
             process's CPU time over the cores available to it, since the previous scrape), \
             memory (resident memory over the memory it may use: the cgroup limit or the \
             machine's), in_flight (requests holding a slot over MAX_CONCURRENT_REQUESTS), \
             connections (open client connections over MAX_CONNECTIONS).",
        ),
        &["service", "resource_type"],
    )?;
    Ok(ResourceMetrics {
        utilization,
        process: resources::ProcessUse::new(),
    })
}
/// The rate limiter's sources, as `gateway_rate_limit_active` labels them.
const LIMITER_SOURCES: [&str; 5] = ["memory", "redis", "fail_local", "fail_open", "fail_closed"];

/// `gateway_auth_refused_total`, `gateway_rate_limited_total`, `gateway_rate_limit_active`.
fn identity_metrics() -> Result<IdentityMetrics, prometheus::Error> {
    let auth_refused = IntCounterVec::new(
        Opts::new(
            "gateway_auth_refused_total",
            "Requests refused by authentication (401/403), by reason.",
        ),
        &["reason"],
    )?;
    let rate_limited = IntCounterVec::new(
        Opts::new(
            "gateway_rate_limited_total",
            "Requests refused with 429 by a rate limit, by tier and limit (requests, tokens, unavailable).",
        ),
        &["tier", "limit"],
    )?;
    let limiter_active = IntGaugeVec::new(
        Opts::new(
            "gateway_rate_limit_active",
            "1 for the rate limiter's active source (memory, redis, or the failure mode fail_local / fail_open / fail_closed while Redis is unreachable).",
        ),
        &["source"],
    )?;
    Ok(IdentityMetrics {
        auth_refused,
        rate_limited,
        limiter_active,
    })
}

/// The answers (`llm_requests_total`), their latency (`llm_request_duration_seconds`) and
/// the errors (`llm_errors_total`).
fn golden_signals() -> Result<(IntCounterVec, HistogramVec, IntCounterVec), prometheus::Error> {
    let requests = IntCounterVec::new(
        Opts::new(
            "llm_requests_total",
            "Answers the gateway gave, by answering service, model and status.",
        ),
        &["service", "model", "status_code"],
    )?;
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "llm_request_duration_seconds",
            "Time to answer, fallbacks included.",
        )
        .buckets(LATENCY_BUCKETS_S.to_vec()),
        &["service", "model", "endpoint"],
    )?;
    let errors = IntCounterVec::new(
        Opts::new(
            "llm_errors_total",
            "Errors, by service (an instance, or `gateway`), type and error_code (the HTTP \
             status: the upstream's for an instance, the gateway's answer for `gateway`; \
             `none` for a failure without one: a connection failure, a timeout, a malformed \
             answer).",
        ),
        &["service", "error_type", "error_code"],
    )?;
    Ok((requests, duration, errors))
}

/// The tries on instances (`upstream_attempts_total`) and the answers by tier
/// (`fallback_responses_total`).
fn upstreams_and_tiers() -> Result<(IntCounterVec, IntCounterVec), prometheus::Error> {
    let upstream_attempts = IntCounterVec::new(
        Opts::new(
            "upstream_attempts_total",
            "Tries on LLM instances, by instance and outcome.",
        ),
        &["service", "outcome"],
    )?;
    let fallback = IntCounterVec::new(
        Opts::new(
            "fallback_responses_total",
            "Answers by the tier that served them.",
        ),
        &["tier"],
    )?;
    Ok((upstream_attempts, fallback))
}

/// The gauges of load and state: requests in flight, breaker states, available instances.
fn state_gauges() -> Result<(IntGauge, IntGaugeVec, IntGauge), prometheus::Error> {
    let in_flight = IntGauge::new(
        "in_flight_requests",
        "Requests in flight through the gateway.",
    )?;
    let breaker_state = IntGaugeVec::new(
        Opts::new(
            "circuit_breaker_state",
            "Breaker state: 0 closed, 1 open, 2 half-open.",
        ),
        &["service"],
    )?;
    let available = IntGauge::new("available_instances", "Instances passing health checks.")?;
    Ok((in_flight, breaker_state, available))
}

/// Client connections and request bodies.
fn edge_metrics() -> Result<EdgeMetrics, prometheus::Error> {
    let closed = IntCounterVec::new(
        Opts::new(
            "gateway_connections_closed_total",
            "Client connections the gateway closed: header_timeout, idle, evicted (room made \
             at the cap), refused (at the cap, none idle).",
        ),
        &["reason"],
    )?;
    let refused_uploads = IntCounterVec::new(
        Opts::new(
            "gateway_request_bodies_refused_total",
            "Request bodies refused: too_slow (408), too_large (413), no_room (503).",
        ),
        &["reason"],
    )?;
    for reason in http_edge::serve::CloseReason::ALL {
        closed.with_label_values(&[reason.as_str()]);
    }
    for why in ["too_slow", "too_large", "no_room"] {
        refused_uploads.with_label_values(&[why]);
    }
    Ok(EdgeMetrics {
        connections: IntGauge::new("gateway_connections_open", "Open client connections.")?,
        max_connections: IntGauge::new(
            "gateway_connections_max",
            "The cap on open client connections (MAX_CONNECTIONS).",
        )?,
        closed,
        uploads: IntGauge::new(
            "gateway_request_bodies_reading",
            "Request bodies being received (slow uploads show here, not in in_flight_requests).",
        )?,
        refused_uploads,
        syncing: std::sync::Mutex::new(()),
    })
}

/// Streams: time to the first token, how they ended, and their continuations.
fn stream_metrics() -> Result<(HistogramVec, IntCounterVec, IntCounterVec), prometheus::Error> {
    let first_token = HistogramVec::new(
        HistogramOpts::new(
            "llm_time_to_first_token_seconds",
            "Streams: from the try's start to the first token, by upstream.",
        )
        .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0]),
        &["service"],
    )?;
    let stream_events = IntCounterVec::new(
        Opts::new(
            "llm_stream_events_total",
            "Streams: how they ended (completed, finalized, interrupted, abandoned) and \
             malformed events skipped, by upstream.",
        ),
        &["service", "event"],
    )?;
    let continuations = IntCounterVec::new(
        Opts::new(
            "llm_stream_continuations_total",
            "Streams that broke after they reached the client, by outcome (continued: by \
             prefill on another target; spliced: restarted there and spliced; gave_up) and \
             the reason a stream was not continued (none when it was).",
        ),
        &["outcome", "reason"],
    )?;
    Ok((first_token, stream_events, continuations))
}

impl UpstreamObserver for Metrics {
    fn attempt(
        &self,
        instance_id: &str,
        _model: &str,
        outcome: Result<u16, &UpstreamError>,
        _took: Duration,
    ) {
        match outcome {
            Ok(_) => self
                .upstream_attempts
                .with_label_values(&[instance_id, "success"])
                .inc(),
            Err(error) => {
                self.upstream_attempts
                    .with_label_values(&[instance_id, "failure"])
                    .inc();
                self.errors
                    .with_label_values(&[instance_id, error.error_type(), error_code(error)])
                    .inc();
            }
        }
    }

    fn breaker_call(&self, breaker: &str, outcome: Outcome, took: Duration) {
        let outcome = match outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            // Says nothing of the dependency: the breaker does not count it either.
            Outcome::Ignored => return,
        };
        self.breakers
            .call_duration
            .with_label_values(&[breaker, outcome])
            .observe(took.as_secs_f64());
    }

    fn abandoned(&self, instance_id: &str, _took: Duration) {
        self.upstream_attempts
            .with_label_values(&[instance_id, "abandoned"])
            .inc();
    }
}
