//! The recorder: one HDR histogram for the whole run, counts by status and by fallback tier,
//! and a per-second series, in memory bounded by the run's length rather than its requests.
//!
//! Seconds are those of a request's *start*, so a latency spike shows where the trouble
//! began, not `--timeout` later. A second keeps its raw latencies only while it is open: it
//! closes, keeping just its p50 and p95, once the clock has passed it and none of the
//! requests started in it is still in flight (at most `--timeout` later). A one-hour run at
//! 50 RPS thus holds 3,600 small rows and the samples of the last few seconds, never every
//! sample. The recorder is pure in time: callers pass offsets from the run's start.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::outcome::Outcome;

/// The highest latency the histogram tells apart (1 hour); longer ones count as 1 hour.
const HISTOGRAM_MAX_MICROS: u64 = 3_600_000_000;
/// Three significant digits: 0.1 % error on every percentile.
const HISTOGRAM_SIGFIG: u8 = 3;

/// One finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When it was sent, from the run's start.
    pub start: Duration,
    /// How long until its whole answer (or its error) came back.
    pub latency: Duration,
    /// What it came to.
    pub outcome: Outcome,
}

/// Accumulates samples; see the module documentation for what it keeps.
#[derive(Debug)]
pub struct Recorder {
    histogram: Histogram<u64>,
    latency_sum_micros: u128,
    latency_max_micros: u64,
    statuses: BTreeMap<String, u64>,
    tiers: BTreeMap<String, u64>,
    requests: u64,
    answered: u64,
    skipped: u64,
    in_flight: u64,
    seconds: Vec<Second>,
    /// Every second before this one is closed.
    first_open: usize,
}

/// What the progress bar shows while the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests finished so far.
    pub requests: u64,
    /// Of those, the ones that were not 2xx.
    pub errors: u64,
    /// Requests sent and not finished.
    pub in_flight: u64,
}

/// Everything the run measured, as written in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Counts, availability and throughput.
    pub totals: Totals,
    /// Latency of every finished request (errors included), in milliseconds.
    pub latency_ms: LatencySummary,
    /// Requests by HTTP status (`"200"`) or transport error (`"error:timeout"`).
    pub status_counts: BTreeMap<String, u64>,
    /// 2xx answers by the fallback tier that served them (`"none"` when no fallback did).
    pub fallback_tiers: BTreeMap<String, u64>,
    /// One row per second of the run, by request start.
    pub series: Vec<SecondRow>,
}

/// The run's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests finished (answered or failed).
    pub requests: u64,
    /// Requests answered with a 2xx.
    pub answered_2xx: u64,
    /// Requests not answered with a 2xx (other statuses and transport errors).
    pub errors: u64,
    /// Open loop only: ticks not sent because `--concurrent` requests were in flight.
    pub skipped: u64,
    /// `answered_2xx / requests` in percent; 0 when nothing was sent.
    pub availability_pct: f64,
    /// Finished requests per second of the run's wall time.
    pub throughput_rps: f64,
}

/// Latency percentiles in milliseconds (0 when nothing finished).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Exact mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Exact maximum.
    pub max: f64,
}

/// One second of the run: the requests started in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds from the run's start.
    pub second: u64,
    /// Requests started in this second (and finished).
    pub requests: u64,
    /// Of those, the ones not answered with a 2xx.
    pub errors: u64,
    /// Median latency, in milliseconds; absent when no request started in this second.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency, in milliseconds; absent likewise.
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Default)]
struct Second {
    requests: u64,
    errors: u64,
    in_flight: u64,
    latencies: Latencies,
}

#[derive(Debug)]
enum Latencies {
    /// Raw latencies in microseconds, while requests of this second may still finish.
    Open(Vec<u64>),
    /// p50 and p95 in microseconds, once none can.
    Closed { p50: Option<u64>, p95: Option<u64> },
}

impl Default for Latencies {
    fn default() -> Self {
        Self::Open(Vec::new())
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> anyhow::Result<Self> {
        let histogram = Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, HISTOGRAM_SIGFIG)
            .map_err(|error| anyhow::anyhow!("cannot create the latency histogram: {error}"))?;
        Ok(Self {
            histogram,
            latency_sum_micros: 0,
            latency_max_micros: 0,
            statuses: BTreeMap::new(),
            tiers: BTreeMap::new(),
            requests: 0,
            answered: 0,
            skipped: 0,
            in_flight: 0,
            seconds: Vec::new(),
            first_open: 0,
        })
    }

    /// A request is sent at `start`: its second stays open until it is recorded.
    pub fn begin(&mut self, start: Duration) {
        self.in_flight += 1;
        self.second_mut(start).in_flight += 1;
    }

    /// An open-loop tick at `now` was not sent (too many requests in flight).
    pub fn skip(&mut self, now: Duration) {
        self.skipped += 1;
        self.close_before(now);
    }

    /// A request finished at `now`; closes the seconds nothing can land in any more.
    pub fn record(&mut self, sample: &Sample, now: Duration) {
        let micros = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
        let success = sample.outcome.status.is_success();
        self.histogram.saturating_record(micros);
        self.latency_sum_micros += u128::from(micros);
        self.latency_max_micros = self.latency_max_micros.max(micros);
        *self
            .statuses
            .entry(sample.outcome.status.to_string())
            .or_default() += 1;
        if let Some(tier) = &sample.outcome.tier {
            *self.tiers.entry(tier.clone()).or_default() += 1;
        }
        self.requests += 1;
        if success {
            self.answered += 1;
        }
        self.in_flight = self.in_flight.saturating_sub(1);

        let second = self.second_mut(sample.start);
        second.requests += 1;
        if !success {
            second.errors += 1;
        }
        second.in_flight = second.in_flight.saturating_sub(1);
        if let Latencies::Open(latencies) = &mut second.latencies {
            latencies.push(micros);
        }
        self.close_before(now);
    }

    /// The counts so far, for the progress bar.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests,
            errors: self.requests - self.answered,
            in_flight: self.in_flight,
        }
    }

    /// How many seconds still hold raw latencies (for the memory bound's test).
    #[cfg(test)]
    pub fn open_seconds(&self) -> usize {
        self.seconds
            .iter()
            .filter(|second| matches!(second.latencies, Latencies::Open(_)))
            .count()
    }

    /// The results of a run that took `elapsed` (its wall time, for throughput).
    pub fn results(&self, elapsed: Duration) -> Results {
        let requests = self.requests;
        let availability_pct = if requests == 0 {
            0.0
        } else {
            ratio(self.answered, requests) * 100.0
        };
        let throughput_rps = if elapsed.is_zero() {
            0.0
        } else {
            as_f64(requests) / elapsed.as_secs_f64()
        };
        Results {
            totals: Totals {
                requests,
                answered_2xx: self.answered,
                errors: requests - self.answered,
                skipped: self.skipped,
                availability_pct,
                throughput_rps,
            },
            latency_ms: self.latency_summary(),
            status_counts: self.statuses.clone(),
            fallback_tiers: self.tiers.clone(),
            series: self.series(),
        }
    }

    fn latency_summary(&self) -> LatencySummary {
        if self.requests == 0 {
            return LatencySummary {
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            };
        }
        // HDR reports a bucket's highest equivalent value, which can exceed the exact max.
        let at = |quantile: f64| {
            millis(
                self.histogram
                    .value_at_quantile(quantile)
                    .min(self.latency_max_micros),
            )
        };
        let mean_micros = self.latency_sum_micros / u128::from(self.requests);
        LatencySummary {
            mean: millis(u64::try_from(mean_micros).unwrap_or(u64::MAX)),
            p50: at(0.5),
            p90: at(0.9),
            p95: at(0.95),
            p99: at(0.99),
            p99_9: at(0.999),
            max: millis(self.latency_max_micros),
        }
    }

    fn series(&self) -> Vec<SecondRow> {
        (0_u64..)
            .zip(&self.seconds)
            .map(|(index, second)| {
                let (p50, p95) = match &second.latencies {
                    Latencies::Open(latencies) => percentiles(latencies),
                    Latencies::Closed { p50, p95 } => (*p50, *p95),
                };
                SecondRow {
                    second: index,
                    requests: second.requests,
                    errors: second.errors,
                    p50_ms: p50.map(millis),
                    p95_ms: p95.map(millis),
                }
            })
            .collect()
    }

    fn second_mut(&mut self, at: Duration) -> &mut Second {
        let index = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        if index >= self.seconds.len() {
            self.seconds.resize_with(index + 1, Second::default);
        }
        &mut self.seconds[index]
    }

    /// Closes every second before `now`'s with nothing in flight. Only seconds after
    /// `first_open` are looked at: at most `--timeout` of them stay open.
    fn close_before(&mut self, now: Duration) {
        let current = usize::try_from(now.as_secs()).unwrap_or(usize::MAX);
        let end = current.min(self.seconds.len());
        for second in self.seconds.iter_mut().take(end).skip(self.first_open) {
            if second.in_flight > 0 {
                continue;
            }
            if let Latencies::Open(latencies) = &second.latencies {
                let (p50, p95) = percentiles(latencies);
                second.latencies = Latencies::Closed { p50, p95 };
            }
        }
        while self.first_open < end
            && matches!(
                self.seconds[self.first_open].latencies,
                Latencies::Closed { .. }
            )
        {
            self.first_open += 1;
        }
    }
}

/// Nearest-rank p50 and p95 of raw latencies.
fn percentiles(latencies: &[u64]) -> (Option<u64>, Option<u64>) {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    (nearest_rank(&sorted, 50), nearest_rank(&sorted, 95))
}

/// The smallest value with at least `percent` % of the values at or below it.
fn nearest_rank(sorted: &[u64], percent: usize) -> Option<u64> {
    let rank = (sorted.len() * percent).div_ceil(100);
    sorted.get(rank.saturating_sub(1)).copied()
}

/// Counts and microseconds stay far below 2^52, where `f64` would round them.
fn as_f64(value: u64) -> f64 {
    value as f64
}

fn ratio(part: u64, whole: u64) -> f64 {
    as_f64(part) / as_f64(whole)
}

fn millis(micros: u64) -> f64 {
    as_f64(micros) / 1000.0
}

#[cfg(test)]
mod tests;
