//! Prometheus metrics of the service, resolved once and updated on every request.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Answers kept for the SLA's recent average.
const RECENT: usize = 50;

/// The service's metrics and the recent latencies the model health reads.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Requests being answered now.
    pub in_flight: IntGauge,
    active_faults: IntGaugeVec,
    tokens: IntCounter,
    recent_ms: Mutex<VecDeque<u64>>,
    rendering: Mutex<()>,
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests answered, by endpoint and status.",
            ),
            &["endpoint", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer a request (to the last byte of a stream), by endpoint.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
            ]),
            &["endpoint"],
        )?;
        let in_flight = IntGauge::new("http_requests_in_flight", "Requests being answered.")?;
        let active_faults = IntGaugeVec::new(
            Opts::new("active_faults", "Injected faults now active, by kind."),
            &["kind"],
        )?;
        let tokens = IntCounter::new("tokens_generated_total", "Tokens generated.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(active_faults.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        // CPU, memory and file descriptors, as the gateway exports them (the dashboards'
        // resources panels).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            requests,
            duration,
            in_flight,
            active_faults,
            tokens,
            recent_ms: Mutex::new(VecDeque::with_capacity(RECENT)),
            rendering: Mutex::new(()),
        })
    }

    /// Records one answered request.
    pub fn observe(&self, endpoint: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[endpoint, status_label(status)])
            .inc();
        self.duration
            .with_label_values(&[endpoint])
            .observe(took.as_secs_f64());
        if (200..300).contains(&status) {
            let mut recent = self
                .recent_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        }
    }

    /// Counts generated tokens.
    pub fn add_tokens(&self, n: u32) {
        self.tokens.inc_by(u64::from(n));
    }

    /// The average time of the last successful answers, if any.
    pub fn recent_average_ms(&self) -> Option<u64> {
        let recent = self
            .recent_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = u64::try_from(recent.len()).ok().filter(|n| *n > 0)?;
        Some(recent.iter().sum::<u64>() / n)
    }

    /// Prometheus text exposition, with the active faults gauge set from `active_kinds`.
    pub fn render(&self, active_kinds: &[String]) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        {
            // Two scrapes at once must not interleave their reset and increments.
            let _rendering = self
                .rendering
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.active_faults.reset();
            for kind in active_kinds {
                self.active_faults.with_label_values(&[kind]).inc();
            }
            TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
