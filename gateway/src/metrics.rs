//! Prometheus metrics: the seed's golden signals, breaker states, fallback use, discovery,
//! load, and the process's CPU, memory and file descriptors. Handles are resolved per
//! label set by the prometheus crate; gauges that mirror state are set at scrape time.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::pool::UpstreamObserver;
use crate::upstream::UpstreamError;

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
    edge: EdgeMetrics,
    identity: IdentityMetrics,
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
}

impl Metrics {
    /// Fresh metrics in their own registry, with the process collector.
    pub fn new() -> Result<Self, prometheus::Error> {
        let (requests, duration, errors) = golden_signals()?;
        let (upstream_attempts, fallback) = upstreams_and_tiers()?;
        let (in_flight, breaker_state, available) = state_gauges()?;
        let (first_token, stream_events) = stream_metrics()?;
        let edge = edge_metrics()?;
        let identity = identity_metrics()?;
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
            edge,
            identity,
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
            Box::new(self.edge.connections.clone()),
            Box::new(self.edge.max_connections.clone()),
            Box::new(self.edge.closed.clone()),
            Box::new(self.edge.uploads.clone()),
            Box::new(self.edge.refused_uploads.clone()),
            Box::new(self.identity.auth_refused.clone()),
            Box::new(self.identity.rate_limited.clone()),
            Box::new(self.identity.limiter_active.clone()),
        ] {
            self.registry.register(collector)?;
        }
        Ok(())
    }

    /// Series that exist from the start, at 0, so dashboards and alerts see them before
    /// the first error of each kind.
    fn seed_series(&self) {
        for error_type in ["validation", "overloaded", "exhausted", "rejected_upstream"] {
            self.errors.with_label_values(&["gateway", error_type]);
        }
        for tier in ["primary", "secondary", "cache", "template"] {
            self.fallback.with_label_values(&[tier]);
        }
    }

    /// One answer to a client on `endpoint` (`generate`, `chat_completions`).
    pub fn answered(&self, answer: Answered<'_>) {
        self.requests
            .with_label_values(&[answer.service, answer.model, &answer.status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[answer.service, answer.model, answer.endpoint])
            .observe(answer.took.as_secs_f64());
        self.fallback.with_label_values(&[answer.tier]).inc();
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

    /// An error the gateway answered itself (`validation`, `overloaded`, `exhausted`…),
    /// counted in the errors and, with its status, in the requests.
    pub fn gateway_error(&self, error_type: &str, status: u16) {
        self.errors
            .with_label_values(&["gateway", error_type])
            .inc();
        self.requests
            .with_label_values(&["gateway", "none", &status.to_string()])
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

    /// Renders the text exposition after setting the state gauges.
    pub fn render(
        &self,
        breakers: &[(String, i64)],
        available: usize,
    ) -> Result<String, prometheus::Error> {
        // Reset first: a breaker of an instance that left discovery must not linger.
        self.breaker_state.reset();
        for (service, state) in breakers {
            self.breaker_state.with_label_values(&[service]).set(*state);
        }
        self.available
            .set(i64::try_from(available).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
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
        .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
        &["service", "model", "endpoint"],
    )?;
    let errors = IntCounterVec::new(
        Opts::new(
            "llm_errors_total",
            "Errors, by service (an instance, or `gateway`) and type.",
        ),
        &["service", "error_type"],
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

/// Streams: time to the first token, and how they ended.
fn stream_metrics() -> Result<(HistogramVec, IntCounterVec), prometheus::Error> {
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
    Ok((first_token, stream_events))
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
                    .with_label_values(&[instance_id, error.error_type()])
                    .inc();
            }
        }
    }

    fn abandoned(&self, instance_id: &str, _took: Duration) {
        self.upstream_attempts
            .with_label_values(&[instance_id, "abandoned"])
            .inc();
    }
}
