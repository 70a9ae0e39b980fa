//! The recorder's tests: percentiles, counts, per-second buckets and the memory bound.

use super::*;
use crate::load::outcome::{ErrorKind, Outcome};

fn at(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

fn sample(start: f64, latency_ms: u64, outcome: Outcome) -> Sample {
    Sample {
        start: at(start),
        latency: Duration::from_millis(latency_ms),
        outcome,
    }
}

fn ok(tier: &str) -> Outcome {
    Outcome::http(200, Some(tier.to_owned()))
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= expected * 0.002 + 0.001
}

#[test]
fn percentiles_follow_the_histogram() {
    let mut recorder = Recorder::new().unwrap();
    for ms in 1..=1000 {
        recorder.record(&sample(0.0, ms, ok("none")), at(1.0));
    }
    let latency = recorder.results(at(10.0)).latency_ms;
    for (actual, expected) in [
        (latency.p50, 500.0),
        (latency.p90, 900.0),
        (latency.p95, 950.0),
        (latency.p99, 990.0),
        (latency.p99_9, 999.0),
    ] {
        assert!(close(actual, expected), "{actual} vs {expected}");
    }
    assert!(close(latency.mean, 500.5), "{}", latency.mean);
    assert_eq!(latency.max, 1000.0);
}

#[test]
fn counts_statuses_tiers_availability_and_throughput() {
    let mut recorder = Recorder::new().unwrap();
    let outcomes = [
        ok("none"),
        ok("none"),
        ok("cache"),
        ok("template"),
        Outcome::http(503, Some("none".to_owned())),
        Outcome::error(ErrorKind::Timeout),
        Outcome::error(ErrorKind::Connect),
        ok("none"),
    ];
    for outcome in outcomes {
        recorder.record(&sample(0.5, 10, outcome), at(0.6));
    }
    recorder.skip(at(0.7));
    let results = recorder.results(at(4.0));
    let totals = &results.totals;
    assert_eq!(totals.requests, 8);
    assert_eq!(totals.answered_2xx, 5);
    assert_eq!(totals.errors, 3);
    assert_eq!(totals.skipped, 1);
    assert!(close(totals.availability_pct, 62.5));
    assert!(close(totals.throughput_rps, 2.0));
    let statuses: Vec<_> = results
        .status_counts
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        statuses,
        [
            ("200", 5),
            ("503", 1),
            ("error:connect", 1),
            ("error:timeout", 1)
        ]
    );
    let tiers: Vec<_> = results
        .fallback_tiers
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(tiers, [("cache", 1), ("none", 3), ("template", 1)]);
}

#[test]
fn buckets_by_start_second_with_their_own_percentiles() {
    let mut recorder = Recorder::new().unwrap();
    for ms in [10, 20, 30, 40] {
        recorder.begin(at(0.2));
        recorder.record(&sample(0.2, ms, ok("none")), at(0.9));
    }
    // Started in second 2, finished in second 4: still second 2's.
    recorder.begin(at(2.5));
    recorder.record(&sample(2.5, 1500, Outcome::http(503, None)), at(4.0));
    let series = recorder.results(at(5.0)).series;
    assert_eq!(series.len(), 3);
    assert_eq!(
        series[0],
        SecondRow {
            second: 0,
            requests: 4,
            errors: 0,
            p50_ms: Some(20.0),
            p95_ms: Some(40.0),
        }
    );
    assert_eq!(series[1].requests, 0);
    assert_eq!(series[1].p50_ms, None);
    assert_eq!((series[2].requests, series[2].errors), (1, 1));
    assert_eq!(series[2].p95_ms, Some(1500.0));
}

#[test]
fn a_second_closes_once_passed_and_drained() {
    let mut recorder = Recorder::new().unwrap();
    recorder.begin(at(0.1));
    recorder.begin(at(0.2));
    recorder.record(&sample(0.1, 5, ok("none")), at(1.5));
    assert_eq!(
        recorder.open_seconds(),
        1,
        "one request of second 0 in flight"
    );
    recorder.record(&sample(0.2, 2000, ok("none")), at(2.2));
    assert_eq!(recorder.open_seconds(), 0);
    let row = &recorder.results(at(3.0)).series[0];
    assert_eq!((row.p50_ms, row.p95_ms), (Some(5.0), Some(2000.0)));
}

#[test]
fn a_long_run_keeps_only_recent_samples() {
    let mut recorder = Recorder::new().unwrap();
    // One hour at 50 RPS, 200 ms each.
    for tick in 0..180_000_u32 {
        let start = f64::from(tick) / 50.0;
        recorder.begin(at(start));
        recorder.record(&sample(start, 200, ok("none")), at(start + 0.2));
        if tick % 50 == 0 {
            assert!(recorder.open_seconds() <= 2);
        }
    }
    let results = recorder.results(at(3600.2));
    assert_eq!(results.series.len(), 3600);
    assert!(results.series.iter().all(|row| row.requests == 50));
}

#[test]
fn an_empty_run_reports_zeros() {
    let results = Recorder::new().unwrap().results(Duration::ZERO);
    assert_eq!(results.totals.requests, 0);
    assert_eq!(results.totals.availability_pct, 0.0);
    assert_eq!(results.totals.throughput_rps, 0.0);
    assert_eq!(results.latency_ms.max, 0.0);
    assert!(results.series.is_empty());
}
