//! The golden signals as running totals ([`Totals`]) for `GET /admin/signals` and the
//! status page: read from the very series Prometheus scrapes, summed over their labels, so
//! the page and a dashboard cannot disagree on what a request, an error or a fallback is.

use llm_api::gateway::LatencyHistogram;
use prometheus::core::Collector;
use prometheus::proto::{LabelPair, MetricFamily};

use super::{LATENCY_BUCKETS_S, Metrics};

/// The running totals of the golden signals since the gateway started.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    /// Answers of the model routes (`llm_requests_total`).
    pub requests: u64,
    /// Of which with a 5xx status (`status_code=~"5.."`, as the availability SLI counts).
    pub errors: u64,
    /// Answers served by a tier other than `primary` (`fallback_responses_total`).
    pub fallbacks: u64,
    /// `llm_request_duration_seconds`, every label set added up.
    pub latency: LatencyHistogram,
}

impl Metrics {
    /// The running totals, read now (a read of each series: no lock the request path takes
    /// for more than an increment).
    pub fn totals(&self) -> Totals {
        let requests = self.requests.collect();
        let fallbacks = self.fallback.collect();
        Totals {
            requests: counter_sum(&requests, |_| true),
            errors: counter_sum(&requests, |labels| {
                label(labels, "status_code").is_some_and(|code| code.starts_with('5'))
            }),
            fallbacks: counter_sum(&fallbacks, |labels| {
                label(labels, "tier").is_some_and(|tier| tier != "primary")
            }),
            latency: histogram_sum(&LATENCY_BUCKETS_S, &self.duration.collect()),
        }
    }
}

/// The value of label `name`.
fn label<'a>(labels: &'a [LabelPair], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|pair| pair.name() == name)
        .map(LabelPair::value)
}

/// The sum of the counters of `families` whose labels `keep` accepts.
fn counter_sum(families: &[MetricFamily], keep: impl Fn(&[LabelPair]) -> bool) -> u64 {
    let total: f64 = families
        .iter()
        .flat_map(MetricFamily::get_metric)
        .filter(|metric| keep(metric.get_label()))
        .map(|metric| metric.get_counter().get_value())
        .sum();
    // Counters count whole answers: an integer well inside f64's exact range.
    total as u64
}

/// The histograms of `families` added up bucket by bucket over `bounds` (a bucket whose
/// bound is not among them is left out; every series of a family has the same bounds).
fn histogram_sum(bounds: &[f64], families: &[MetricFamily]) -> LatencyHistogram {
    let mut sum = LatencyHistogram {
        bounds_s: bounds.to_vec(),
        counts: vec![0; bounds.len()],
        total: 0,
    };
    for metric in families.iter().flat_map(MetricFamily::get_metric) {
        let histogram = metric.get_histogram();
        for bucket in histogram.get_bucket() {
            if let Some(i) = bounds.iter().position(|b| *b == bucket.upper_bound())
                && let Some(count) = sum.counts.get_mut(i)
            {
                *count += bucket.cumulative_count();
            }
        }
        sum.total += histogram.get_sample_count();
    }
    sum
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Answered;

    fn answered<'a>(service: &'a str, status: u16, tier: &'a str, took_ms: u64) -> Answered<'a> {
        Answered {
            service,
            model: "m",
            status,
            tier,
            endpoint: "generate",
            took: Duration::from_millis(took_ms),
            model_label: "default",
            tokens: None,
        }
    }

    #[test]
    fn fresh_metrics_have_every_bucket_at_zero() {
        let totals = Metrics::new().unwrap().totals();
        assert_eq!(totals.requests, 0);
        assert_eq!(totals.errors, 0);
        assert_eq!(totals.fallbacks, 0);
        assert_eq!(totals.latency.total, 0);
        assert_eq!(
            totals.latency.bounds_s, LATENCY_BUCKETS_S,
            "every bound, before any answer"
        );
        assert_eq!(totals.latency.counts, [0; LATENCY_BUCKETS_S.len()]);
    }

    #[test]
    fn totals_add_up_every_service_status_and_tier() {
        let metrics = Metrics::new().unwrap();
        metrics.answered(answered("llm-a", 200, "primary", 3));
        metrics.answered(answered("llm-b", 200, "primary", 70));
        metrics.answered(answered("llm-b", 502, "secondary", 70));
        metrics.answered(answered("fallback_manager", 200, "template", 700));
        metrics.answered(answered("fallback_manager", 200, "cache", 40_000));
        metrics.gateway_error("exhausted", 503);
        metrics.gateway_error("validation", 422);
        let totals = metrics.totals();
        assert_eq!(
            totals.requests, 7,
            "every answer, the gateway's own included"
        );
        assert_eq!(totals.errors, 2, "the 502 and the 503");
        assert_eq!(totals.fallbacks, 3, "secondary, template and cache");
        let latency = &totals.latency;
        assert_eq!(
            latency.bounds_s,
            [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]
        );
        // Cumulative: 3 ms, then two at 70 ms, then 700 ms; 40 s only in +Inf.
        assert_eq!(latency.counts, [1, 1, 3, 3, 3, 4, 4, 4, 4, 4]);
        assert_eq!(latency.total, 5, "the gateway's own errors are not timed");
    }

    #[test]
    fn a_status_class_label_counts_by_its_class() {
        let metrics = Metrics::new().unwrap();
        metrics.answered(answered("llm-a", 599, "primary", 1));
        metrics.answered(answered("llm-a", 404, "primary", 1));
        let totals = metrics.totals();
        assert_eq!(
            (totals.requests, totals.errors),
            (2, 1),
            "5xx is an error, 404 not"
        );
    }
}
