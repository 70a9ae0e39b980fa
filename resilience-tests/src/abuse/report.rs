//! The report: one verdict per attack with its figures, printed and written as JSON.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Map, Value};

use super::rules::ClientFigures;

/// An attack's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every rule held.
    Pass,
    /// At least one rule did not hold (the reasons say which).
    Fail,
}

/// One attack's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    /// The attack's name (`slowloris`, `slow-bodies`, …).
    pub name: &'static str,
    /// Pass or fail.
    pub verdict: Verdict,
    /// Why it failed; empty when it passed.
    pub reasons: Vec<String>,
    /// What was skipped and why (an RSS check without the target's process, …).
    pub skipped: Vec<String>,
    /// The well-behaved client during the attack, when it ran.
    pub client: Option<ClientFigures>,
    /// The attack's own figures.
    pub figures: Map<String, Value>,
    /// How long the attack took, in seconds.
    pub elapsed_s: f64,
}

/// A report under construction: figures, reasons and skipped checks.
#[derive(Debug, Default)]
pub struct Findings {
    /// The attack's figures.
    pub figures: Map<String, Value>,
    /// Why it failed.
    pub reasons: Vec<String>,
    /// What was not checked.
    pub skipped: Vec<String>,
    /// The well-behaved client.
    pub client: Option<ClientFigures>,
}

impl Findings {
    /// Records a figure.
    pub fn figure(&mut self, name: &str, value: impl Serialize) {
        self.figures.insert(
            name.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    /// Records a failed rule.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.reasons.push(reason.into());
    }

    /// Records several failed rules.
    pub fn fail_all(&mut self, reasons: Vec<String>) {
        self.reasons.extend(reasons);
    }

    /// Records a check that could not be made.
    pub fn skip(&mut self, what: impl Into<String>) {
        self.skipped.push(what.into());
    }

    /// The attack's report.
    pub fn into_report(self, name: &'static str, elapsed_s: f64) -> AttackReport {
        AttackReport {
            name,
            verdict: if self.reasons.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            reasons: self.reasons,
            skipped: self.skipped,
            client: self.client,
            figures: self.figures,
            elapsed_s: (elapsed_s * 10.0).round() / 10.0,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target's base URL.
    pub target: String,
    /// `small`, `full` or `custom` (a preset with flags over it).
    pub size: String,
    /// The well-behaved client's rate, requests per second.
    pub rate: f64,
    /// The well-behaved client alone, before any attack.
    pub baseline: ClientFigures,
    /// The latency bar under attack, max(2 × idle p99, 50 ms), in ms.
    pub latency_bar_ms: f64,
    /// The process whose RSS is checked, when found.
    pub rss_pid: Option<u32>,
    /// Its RSS before the first attack, in MiB.
    pub baseline_rss_mib: Option<f64>,
    /// Each attack, in the order run.
    pub attacks: Vec<AttackReport>,
    /// Attacks that passed.
    pub passed: usize,
    /// Attacks that failed.
    pub failed: usize,
    /// The whole run, in seconds.
    pub elapsed_s: f64,
}

impl Report {
    /// The text printed on standard output: a line per attack, its figures and reasons.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let rss = match (self.rss_pid, self.baseline_rss_mib) {
            (Some(pid), Some(mib)) => format!("pid {pid}, {mib} MiB"),
            _ => "not found: RSS checks skipped".to_owned(),
        };
        out.push_str(&format!(
            "abuse {} (size {}): baseline {} requests, {:.2} % ok, p50 {:.1} ms, p99 {:.1} ms; \
             latency bar {:.1} ms; target RSS {rss}\n",
            self.target,
            self.size,
            self.baseline.sent,
            self.baseline.success_pct,
            self.baseline.p50_ms,
            self.baseline.p99_ms,
            self.latency_bar_ms,
        ));
        for attack in &self.attacks {
            let verdict = match attack.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
            };
            out.push_str(&format!(
                "{verdict} {:<14} ({:.1} s)\n",
                attack.name, attack.elapsed_s
            ));
            if let Some(client) = attack.client {
                out.push_str(&format!(
                    "     client: {} requests, {:.2} % ok, p50 {:.1} ms, p99 {:.1} ms\n",
                    client.sent, client.success_pct, client.p50_ms, client.p99_ms
                ));
            }
            let figures: Vec<String> = attack
                .figures
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            if !figures.is_empty() {
                out.push_str(&format!("     {}\n", figures.join(" ")));
            }
            for reason in &attack.reasons {
                out.push_str(&format!("     ✗ {reason}\n"));
            }
            for skipped in &attack.skipped {
                out.push_str(&format!("     – skipped: {skipped}\n"));
            }
        }
        out.push_str(&format!("total {:.1} s\n", self.elapsed_s));
        out.push_str(&format!(
            "abuse: {} passed, {} failed\n",
            self.passed, self.failed
        ));
        out
    }

    /// Writes the report as JSON to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("cannot encode the report")?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
    }
}
