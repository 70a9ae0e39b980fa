//! The steady-state hypothesis and the guard: real requests through the gateway.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use llm_api::envelope::GenerateSuccess;
use llm_api::gateway::GatewayHealth;
use serde::Serialize;
use serde_json::json;

use super::RunArgs;
use super::journal::Journal;

/// Requests a hypothesis check sends.
const HYPOTHESIS_PROBES: usize = 10;
/// The longest a probe may take; a slower answer counts as an error (a client gave up).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One request through the gateway, as a client saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// The HTTP status, if it answered.
    pub status: Option<u16>,
    /// Whether a fallback tier answered.
    pub fallback: bool,
    /// From sending to the end of the answer.
    pub took_ms: u64,
    /// Why there was no answer, if there was none.
    pub error: Option<String>,
}

impl Probe {
    /// A client-visible error: no answer, or not a 2xx.
    pub fn is_error(&self) -> bool {
        !self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends the probes; cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct Prober {
    http: reqwest::Client,
    gateway: String,
    max_error_rate: f64,
    max_fallback_rate: f64,
}

impl Prober {
    /// Probes `args.gateway` against `args`' thresholds.
    pub fn new(http: reqwest::Client, args: &RunArgs) -> Self {
        Self {
            http,
            gateway: args.gateway.trim_end_matches('/').to_owned(),
            max_error_rate: args.max_error_rate,
            max_fallback_rate: args.max_fallback_rate,
        }
    }

    /// `POST /generate` through the gateway.
    pub async fn probe(&self) -> Probe {
        let started = Instant::now();
        let request = self
            .http
            .post(format!("{}/generate", self.gateway))
            .timeout(PROBE_TIMEOUT)
            .json(&json!({"prompt": "chaos experiment probe", "max_tokens": 8}))
            .send();
        let (status, fallback, error) = match request.await {
            Ok(response) => {
                let status = response.status().as_u16();
                let success = response.json::<GenerateSuccess>().await;
                (
                    Some(status),
                    success.is_ok_and(|s| s.data.fallback_used),
                    None,
                )
            }
            Err(error) => (None, false, Some(error.to_string())),
        };
        Probe {
            status,
            fallback,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
        }
    }

    /// Whether the steady state holds now: `/health` says `healthy` and the error and
    /// fallback rates of a few requests stay under the thresholds. Journaled as `phase`.
    pub async fn hypothesis(&self, journal: &mut Journal, phase: &str) -> bool {
        let health = match self
            .http
            .get(format!("{}/health", self.gateway))
            .send()
            .await
        {
            Ok(response) => {
                let health = response.json::<GatewayHealth>().await;
                health
                    .map_or("unreadable", |h| h.overall_status.as_str())
                    .to_owned()
            }
            Err(error) => format!("unreachable ({error})"),
        };
        let mut probes = Vec::with_capacity(HYPOTHESIS_PROBES);
        for _ in 0..HYPOTHESIS_PROBES {
            let probe = self.probe().await;
            journal.probe(phase, &probe);
            probes.push(probe);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (errors, fallbacks) = rates(&probes);
        let holds = health == "healthy"
            && errors <= self.max_error_rate
            && fallbacks <= self.max_fallback_rate;
        journal.hypothesis(
            phase,
            holds,
            format!(
                "/health {health}; {:.0} % errors (max {:.0} %), {:.0} % fallbacks (max {:.0} %) over {} requests",
                errors * 100.0,
                self.max_error_rate * 100.0,
                fallbacks * 100.0,
                self.max_fallback_rate * 100.0,
                probes.len()
            ),
        );
        holds
    }

    /// Checks the hypothesis every second until it holds or `limit` passes.
    pub async fn settle(&self, journal: &mut Journal, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.hypothesis(journal, "after").await {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The error and fallback shares of `probes`.
fn rates(probes: &[Probe]) -> (f64, f64) {
    if probes.is_empty() {
        return (0.0, 0.0);
    }
    let n = probes.len() as f64;
    let errors = probes.iter().filter(|p| p.is_error()).count() as f64;
    let fallbacks = probes.iter().filter(|p| p.fallback).count() as f64;
    (errors / n, fallbacks / n)
}

/// Watches the recent probes during the injection.
pub struct Guard {
    recent: VecDeque<Probe>,
    window: usize,
    max_error_rate: f64,
    max_fallback_rate: f64,
}

impl Guard {
    /// Judges the last `window` probes against the thresholds, once it has that many (a
    /// rate over fewer probes would trip on a single error).
    pub fn new(window: usize, max_error_rate: f64, max_fallback_rate: f64) -> Self {
        Self {
            recent: VecDeque::with_capacity(window),
            window: window.max(1),
            max_error_rate,
            max_fallback_rate,
        }
    }

    /// Adds `probe`; the breach, if the recent window crossed a threshold.
    pub fn observe(&mut self, probe: &Probe) -> Option<String> {
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(probe.clone());
        if self.recent.len() < self.window {
            return None;
        }
        let probes: Vec<Probe> = self.recent.iter().cloned().collect();
        let (errors, fallbacks) = rates(&probes);
        if errors > self.max_error_rate {
            return Some(format!(
                "guard: {:.0} % client-visible errors over the last {} requests (max {:.0} %)",
                errors * 100.0,
                probes.len(),
                self.max_error_rate * 100.0
            ));
        }
        if fallbacks > self.max_fallback_rate {
            return Some(format!(
                "guard: {:.0} % fallback answers over the last {} requests (max {:.0} %)",
                fallbacks * 100.0,
                probes.len(),
                self.max_fallback_rate * 100.0
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(status: Option<u16>, fallback: bool) -> Probe {
        Probe {
            status,
            fallback,
            took_ms: 1,
            error: None,
        }
    }

    #[test]
    fn the_guard_trips_on_errors_once_a_full_window_is_seen() {
        let mut guard = Guard::new(10, 0.1, 1.0);
        for _ in 0..9 {
            assert_eq!(
                guard.observe(&probe(Some(503), false)),
                None,
                "too few to judge"
            );
        }
        let breach = guard.observe(&probe(None, false)).expect("10 of 10 failed");
        assert!(breach.contains("100 %"), "{breach}");
        let mut calm = Guard::new(10, 0.1, 1.0);
        calm.observe(&probe(Some(503), false));
        for _ in 0..9 {
            assert_eq!(
                calm.observe(&probe(Some(200), false)),
                None,
                "1 in 10 is the limit"
            );
        }
    }

    #[test]
    fn a_healthy_window_absorbs_a_rare_error_and_old_probes_leave_it() {
        let mut guard = Guard::new(10, 0.2, 1.0);
        for _ in 0..9 {
            assert_eq!(
                guard.observe(&probe(Some(200), true)),
                None,
                "fallbacks allowed"
            );
        }
        assert_eq!(guard.observe(&probe(Some(503), false)), None, "1 of 10");
        assert_eq!(guard.observe(&probe(Some(503), false)), None, "2 of 10");
        assert!(guard.observe(&probe(Some(503), false)).is_some(), "3 of 10");
        let mut strict = Guard::new(4, 1.0, 0.5);
        for _ in 0..3 {
            assert_eq!(
                strict.observe(&probe(Some(200), true)),
                None,
                "not a full window"
            );
        }
        assert!(
            strict.observe(&probe(Some(200), true)).is_some(),
            "fallback rate"
        );
    }

    #[test]
    fn rates_count_errors_and_fallbacks_apart() {
        let probes = [
            probe(Some(200), false),
            probe(Some(200), true),
            probe(Some(503), false),
            probe(None, false),
        ];
        assert_eq!(rates(&probes), (0.5, 0.25));
        assert_eq!(rates(&[]), (0.0, 0.0));
        assert!(probe(Some(429), false).is_error());
        assert!(!probe(Some(204), false).is_error());
    }
}
