//! The report: its JSON shape (`report.json`), the plain-text summary printed at the end,
//! and writing both files of `--report DIR`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::html;
use super::stats::Results;

/// `report.json`: the parameters, when the run started, and everything measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was asked for.
    pub parameters: Parameters,
    /// When the first request was sent, RFC 3339 in UTC.
    pub started_at: String,
    /// The same instant, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Wall time from the first request sent to the last one finished, in seconds.
    pub elapsed_s: f64,
    /// Ctrl-C ended the run before its duration.
    pub interrupted: bool,
    /// Totals, latency, counts and the per-second series.
    #[serde(flatten)]
    pub results: Results,
}

/// The run's parameters, as resolved from the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// `--gateway`.
    pub gateway: String,
    /// The URL the load went to.
    pub url: String,
    /// `generate` or `chat`.
    pub endpoint: String,
    /// `closed_loop` (workers) or `open_loop` (fixed rate).
    pub mode: String,
    /// Workers (closed loop) or requests in flight at most (open loop).
    pub concurrent: usize,
    /// `--rps`, for the open loop.
    pub rps: Option<f64>,
    /// `--duration`, in seconds.
    pub duration_s: u64,
    /// `--timeout` per request, in seconds.
    pub timeout_s: f64,
    /// `--prompt` (`{n}` varies per request).
    pub prompt: String,
    /// `--model`, if given.
    pub model: Option<String>,
    /// `--min-availability`, in percent, if given.
    pub min_availability: Option<f64>,
}

/// The files [`write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// `DIR/report.json`.
    pub json: PathBuf,
    /// `DIR/report.html`.
    pub html: PathBuf,
}

/// Writes `report.json` and `report.html` into `dir`, creating it; fails naming the file.
pub fn write(dir: &Path, report: &Report) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    let json = dir.join("report.json");
    let body = serde_json::to_vec_pretty(report).context("cannot serialize the report")?;
    std::fs::write(&json, body).with_context(|| format!("cannot write {}", json.display()))?;
    let html = dir.join("report.html");
    std::fs::write(&html, html::render(report))
        .with_context(|| format!("cannot write {}", html.display()))?;
    Ok(Written { json, html })
}

/// The one-screen plain-text summary.
pub fn summary(report: &Report) -> String {
    let p = &report.parameters;
    let r = &report.results;
    let t = &r.totals;
    let l = &r.latency_ms;
    let load = match p.rps {
        Some(rps) => format!("{rps} req/s (at most {} in flight)", p.concurrent),
        None => format!("{} workers", p.concurrent),
    };
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<13}{text}");
    };
    line(
        "Load test",
        format!("POST {} · {load} · {} s", p.url, p.duration_s),
    );
    let interrupted = if report.interrupted {
        " (interrupted)"
    } else {
        ""
    };
    line(
        "Started",
        format!(
            "{} · ran {:.1} s{interrupted}",
            report.started_at, report.elapsed_s
        ),
    );
    line(
        "Requests",
        format!(
            "{} · {:.1} req/s · {} skipped",
            t.requests, t.throughput_rps, t.skipped
        ),
    );
    line(
        "Availability",
        format!(
            "{:.2} % ({} answered 2xx, {} errors)",
            t.availability_pct, t.answered_2xx, t.errors
        ),
    );
    line(
        "Latency ms",
        format!(
            "mean {:.1} · p50 {:.1} · p90 {:.1} · p95 {:.1} · p99 {:.1} · p99.9 {:.1} · max {:.1}",
            l.mean, l.p50, l.p90, l.p95, l.p99, l.p99_9, l.max
        ),
    );
    line("Statuses", counts(&r.status_counts));
    line("Fallback", counts(&r.fallback_tiers));
    out
}

fn counts(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(key, count)| format!("{key}: {count}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Milliseconds since the Unix epoch of `at` (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// `unix_ms` as RFC 3339 in UTC, to the second (`2023-11-14T22:13:20Z`).
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = llm_api::time::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
