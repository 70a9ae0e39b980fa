//! The journal of one experiment: every probe, action, abort and rollback with its time,
//! written as JSON and summed up on one screen.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::RunArgs;
use super::actions::Target;
use super::probe::Probe;

/// How an experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Injected for its whole duration; the steady state came back.
    Completed,
    /// The guard saw clients suffer: aborted and rolled back.
    Aborted,
    /// Rolled back, but the steady state did not come back within the settle time.
    Deviated,
    /// The steady state did not hold before: nothing was injected.
    NotInjected,
    /// Ctrl-C or SIGTERM: rolled back.
    Interrupted,
    /// The injection itself failed (and what was in place was rolled back).
    Failed,
    /// The rollback failed: the fault may still be in place.
    RollbackFailed,
}

impl Outcome {
    /// The exit status: 0 completed, 1 failed, 3 aborted, 4 deviated, 5 not injected, 6
    /// rollback failed, 130 interrupted (2 is left to usage errors).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Completed => 0,
            Self::RollbackFailed => 6,
            Self::Failed => 1,
            Self::NotInjected => 5,
            Self::Aborted => 3,
            Self::Deviated => 4,
            Self::Interrupted => 130,
        }
    }
}

/// One entry of the journal.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the experiment started.
    pub at_ms: u64,
    /// `probe`, `hypothesis`, `action`, `abort`, `rollback` or `note`.
    pub kind: &'static str,
    /// `before`, `guard` or `after` for probes and hypotheses; `inject` for actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Whether it succeeded (actions, rollbacks, hypotheses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// What happened.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The probe's result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

/// The settings of the run, as journaled.
#[derive(Debug, Clone, Serialize)]
struct Parameters {
    duration_s: f64,
    max_error_rate: f64,
    max_fallback_rate: f64,
    probe_interval_ms: u64,
    window: usize,
    settle_s: f64,
    controller: String,
}

/// Everything one experiment did.
#[derive(Debug, Serialize)]
pub struct Journal {
    experiment: String,
    target: Target,
    gateway: String,
    parameters: Parameters,
    /// Unix milliseconds at the start.
    started_at_ms: u64,
    #[serde(skip)]
    started: Instant,
    events: Vec<Event>,
    outcome: Option<Outcome>,
    duration_ms: u64,
}

impl Journal {
    /// An empty journal for `experiment` on `target`.
    pub fn new(experiment: &str, args: &RunArgs, target: &Target) -> Self {
        Self {
            experiment: experiment.to_owned(),
            target: target.clone(),
            gateway: args.gateway.clone(),
            parameters: Parameters {
                duration_s: args.duration,
                max_error_rate: args.max_error_rate,
                max_fallback_rate: args.max_fallback_rate,
                probe_interval_ms: args.probe_interval_ms,
                window: args.window,
                settle_s: args.settle,
                controller: args.controller.clone(),
            },
            started_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            started: Instant::now(),
            events: Vec::new(),
            outcome: None,
            duration_ms: 0,
        }
    }

    fn push(&mut self, kind: &'static str, phase: Option<&str>, ok: Option<bool>, detail: String) {
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(kind, phase, ok, detail, "experiment");
        self.events.push(Event {
            at_ms,
            kind,
            phase: phase.map(str::to_owned),
            ok,
            detail,
            probe: None,
        });
    }

    /// A request through the gateway.
    pub fn probe(&mut self, phase: &str, probe: &Probe) {
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.events.push(Event {
            at_ms,
            kind: "probe",
            phase: Some(phase.to_owned()),
            ok: Some(!probe.is_error()),
            detail: String::new(),
            probe: Some(probe.clone()),
        });
    }

    /// A check of the steady-state hypothesis.
    pub fn hypothesis(&mut self, phase: &str, holds: bool, detail: String) {
        self.push("hypothesis", Some(phase), Some(holds), detail);
    }

    /// The injection.
    pub fn action(&mut self, phase: &str, ok: bool, detail: String) {
        self.push("action", Some(phase), Some(ok), detail);
    }

    /// The guard (or a signal) stopped the run.
    pub fn abort(&mut self, why: &str) {
        self.push("abort", None, None, why.to_owned());
    }

    /// The rollback.
    pub fn rollback(&mut self, ok: bool, detail: String) {
        self.push("rollback", None, Some(ok), detail);
    }

    /// A remark.
    pub fn note(&mut self, text: &str) {
        self.push("note", None, None, text.to_owned());
    }

    /// Records the outcome and the run's length.
    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        self.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    }

    /// The journal as a `chaos_experiments` row of the history.
    pub fn record(&self) -> anyhow::Result<history::Record> {
        let ms = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let outcome = serde_json::to_value(self.outcome.unwrap_or(Outcome::Interrupted))?;
        Ok(history::Record::Experiment(history::ExperimentRecord {
            experiment_id: format!("{}-{}", self.experiment, self.started_at_ms),
            name: self.experiment.clone(),
            target: self
                .target
                .name
                .clone()
                .or_else(|| self.target.url.clone())
                .unwrap_or_default(),
            started_at_ms: ms(self.started_at_ms),
            ended_at_ms: ms(self.started_at_ms.saturating_add(self.duration_ms)),
            outcome: outcome.as_str().unwrap_or("unknown").to_owned(),
            journal: serde_json::to_value(self)?,
        }))
    }

    /// Writes the journal as JSON to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }

    /// The one-screen summary.
    pub fn summary(&self) -> String {
        let probes: Vec<&Probe> = self
            .events
            .iter()
            .filter_map(|e| e.probe.as_ref())
            .collect();
        let errors = probes.iter().filter(|p| p.is_error()).count();
        let fallbacks = probes.iter().filter(|p| p.fallback).count();
        let mut lines = vec![format!(
            "experiment {} on {} → {:?} in {:.1} s",
            self.experiment,
            self.target
                .name
                .clone()
                .or_else(|| self.target.url.clone())
                .unwrap_or_default(),
            self.outcome.unwrap_or(Outcome::Failed),
            self.duration_ms as f64 / 1000.0
        )];
        for event in self.events.iter().filter(|e| e.kind != "probe") {
            let ok = match event.ok {
                Some(true) => "✅ ",
                Some(false) => "❌ ",
                None => "",
            };
            lines.push(format!(
                "  {:>7.1} s  {:<10} {}{}{}",
                event.at_ms as f64 / 1000.0,
                event.kind,
                event
                    .phase
                    .as_deref()
                    .map(|p| format!("[{p}] "))
                    .unwrap_or_default(),
                ok,
                event.detail
            ));
        }
        lines.push(format!(
            "  probes: {} requests, {errors} client-visible errors, {fallbacks} fallback answers",
            probes.len()
        ));
        lines.join("\n")
    }

    /// Prints [`Self::summary`].
    #[allow(clippy::print_stdout, reason = "the summary is the command's output")]
    pub fn print_summary(&self) {
        println!("{}", self.summary());
    }
}
