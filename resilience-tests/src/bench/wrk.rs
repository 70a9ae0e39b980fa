//! Closed-loop load with wrk: runs it with the generated script and reads the one JSON line
//! the script's `done` prints.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::confs::WRK_MARKER;

/// Socket errors and non-2xx/3xx answers, as wrk counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WrkErrors {
    /// Connections that could not be opened.
    pub connect: u64,
    /// Failed reads.
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Answers whose status was not 2xx or 3xx.
    pub status: u64,
    /// Requests that timed out.
    pub timeout: u64,
}

impl WrkErrors {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }
}

/// Latency in µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WrkLatency {
    /// The mean.
    pub mean: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    /// The largest.
    pub max: f64,
}

/// The summary line of one wrk run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WrkSummary {
    /// Requests completed.
    pub requests: u64,
    /// How long the run took, in µs.
    pub duration_us: u64,
    /// Its errors.
    pub errors: WrkErrors,
    /// Its latency.
    pub latency: WrkLatency,
}

/// The summary in wrk's standard output: the line that starts with [`WRK_MARKER`].
pub fn parse_output(stdout: &str) -> anyhow::Result<WrkSummary> {
    let line = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix(WRK_MARKER))
        .with_context(|| format!("wrk printed no `{}` line", WRK_MARKER.trim()))?;
    serde_json::from_str(line).with_context(|| format!("wrk's summary line is not valid: {line}"))
}

/// One wrk run against `url`: `connections` connections on min(2, connections) threads
/// for `duration`, with `script`.
pub async fn run(
    wrk: &Path,
    script: &Path,
    url: &str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<WrkSummary> {
    let threads = connections.clamp(1, 2);
    let output = tokio::process::Command::new(wrk)
        .arg("--latency")
        .args(["-t", &threads.to_string()])
        .args(["-c", &connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .args(["--timeout", "10s"])
        .arg("-s")
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk against {url} failed ({}): {}{}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    parse_output(&stdout).with_context(|| format!("wrk against {url}"))
}
