//! Prometheus metrics of the service, resolved once and updated on every request.
//! `llm_tokens_processed_total{service,model,operation}` is named and labelled as the
//! gateway's: `service` is this instance's `SERVICE_ID` and `model` its `MODEL_NAME`, both
//! fixed at start, so the two series are resolved once.

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
    /// `llm_tokens_processed_total` of the prompts and of the answers.
    prompt_tokens: IntCounter,
    completion_tokens: IntCounter,
    recent_ms: Mutex<VecDeque<u64>>,
    rendering: Mutex<()>,
}

impl Metrics {
    /// Fresh metrics in their own registry, for the instance `service` serving `model`.
    pub fn new(service: &str, model: &str) -> Result<Self, prometheus::Error> {
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
        let processed = IntCounterVec::new(
            Opts::new(
                "llm_tokens_processed_total",
                "Tokens of the requests answered, by service (SERVICE_ID), model (MODEL_NAME) \
                 and operation (prompt: the request's tokens, completion: the answer's).",
            ),
            &["service", "model", "operation"],
        )?;
        let prompt_tokens = processed.with_label_values(&[service, model, "prompt"]);
        let completion_tokens = processed.with_label_values(&[service, model, "completion"]);
        registry.register(Box::new(processed))?;
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
            prompt_tokens,
            completion_tokens,
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

    /// Counts the tokens of one answer: `prompt` read, `completion` generated.
    pub fn add_tokens(&self, prompt: u32, completion: u32) {
        self.tokens.inc_by(u64::from(completion));
        self.prompt_tokens.inc_by(u64::from(prompt));
        self.completion_tokens.inc_by(u64::from(completion));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_under_the_instance_and_its_model() {
        let metrics = Metrics::new("llm_service_1", "sim-model").unwrap();
        metrics.add_tokens(3, 5);
        metrics.add_tokens(1, 2);
        let text = metrics.render(&[]).unwrap();
        for (series, value) in [
            (
                r#"llm_tokens_processed_total{model="sim-model",operation="prompt",service="llm_service_1"}"#,
                "4",
            ),
            (
                r#"llm_tokens_processed_total{model="sim-model",operation="completion",service="llm_service_1"}"#,
                "7",
            ),
            ("tokens_generated_total", "7"),
        ] {
            assert!(
                text.contains(&format!("{series} {value}\n")),
                "{series} in\n{text}"
            );
        }
    }
}
