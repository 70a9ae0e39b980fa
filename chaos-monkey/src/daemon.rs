//! The periodic daemon the lab's compose file runs.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use llm_api::fault::{FaultKind, FaultSpec};
use rand::RngExt;
use serde::Deserialize;

use crate::heartbeat;
use llm_api::token::ChaosToken;

/// The seed's variables.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Comma-separated llm-services: base URLs, or compose names (then `http://NAME:8000`).
    #[arg(long, env = "TARGET_SERVICES", default_value = "")]
    pub target_services: String,
    /// Seconds between two rounds.
    #[arg(long, env = "CHAOS_INTERVAL", default_value_t = 300.0)]
    pub chaos_interval: f64,
    /// The chance that a round injects a fault (0 to 1).
    #[arg(long, env = "FAILURE_PROBABILITY", default_value_t = 0.3)]
    pub failure_probability: f64,
    /// Seconds each fault lasts.
    #[arg(long, env = "CHAOS_DURATION", default_value_t = 60.0)]
    pub chaos_duration: f64,
    /// The file the daemon rewrites every 10 s for `chaos-monkey healthcheck`
    /// (default: `chaos-monkey.heartbeat` in the temporary directory).
    #[arg(long, env = "CHAOS_HEARTBEAT_FILE")]
    pub heartbeat_file: Option<PathBuf>,
    /// The llm-services' `CHAOS_TOKEN`, sent to their fault API as `Authorization: Bearer`
    /// (unset: no header).
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true)]
    pub chaos_token: Option<ChaosToken>,
}

/// A fault in place: where and its id.
#[derive(Debug, Clone)]
struct Injected {
    target: String,
    id: String,
    until: tokio::time::Instant,
}

#[derive(Deserialize)]
struct Created {
    id: serde_json::Value,
}

impl DaemonArgs {
    /// The targets as base URLs; fails on an empty list or a bad setting.
    pub fn targets(&self) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(
            self.chaos_interval.is_finite()
                && self.chaos_interval > 0.0
                && self.chaos_interval <= 86_400.0,
            "CHAOS_INTERVAL must be a positive number of seconds, at most a day"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.failure_probability),
            "FAILURE_PROBABILITY must be between 0 and 1"
        );
        anyhow::ensure!(
            self.chaos_duration.is_finite()
                && self.chaos_duration > 0.0
                && self.chaos_duration <= 86_400.0,
            "CHAOS_DURATION must be a positive number of seconds, at most a day"
        );
        let targets: Vec<String> = self
            .target_services
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                if t.contains("://") {
                    t.trim_end_matches('/').to_owned()
                } else {
                    format!("http://{t}:8000")
                }
            })
            .collect();
        anyhow::ensure!(
            !targets.is_empty(),
            "TARGET_SERVICES is empty: nothing to inject faults into"
        );
        Ok(targets)
    }
}

/// One of the faults a round may choose, lasting `seconds`.
fn random_fault(seconds: f64) -> FaultSpec {
    let mut rng = rand::rng();
    let kind = match rng.random_range(0..5) {
        0 => FaultKind::Latency {
            ms: None,
            min_ms: Some(1000),
            max_ms: Some(3000),
        },
        1 => FaultKind::Error {
            status: 503,
            code: None,
            message: Some("injected by chaos-monkey".to_owned()),
            retry_after_s: None,
        },
        2 => FaultKind::Error {
            status: 500,
            code: None,
            message: Some("injected by chaos-monkey".to_owned()),
            retry_after_s: None,
        },
        3 => FaultKind::Reset,
        _ => FaultKind::Hang,
    };
    let mut spec = FaultSpec::new(kind).for_seconds(seconds);
    spec.rate = 0.5;
    spec
}

/// Runs rounds until `shutdown` resolves, then removes the faults still in place.
pub async fn run(args: DaemonArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let targets = args.targets()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let interval = Duration::from_secs_f64(args.chaos_interval);
    tracing::info!(
        ?targets,
        interval_s = args.chaos_interval,
        probability = args.failure_probability,
        duration_s = args.chaos_duration,
        "chaos monkey started"
    );
    let mut injected: Vec<Injected> = Vec::new();
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    // After a pause (SIGSTOP), go on at the pace set, not with every missed round at once.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat_file = heartbeat::path(args.heartbeat_file.as_deref());
    let mut heartbeat = tokio::time::interval(heartbeat::EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = heartbeat.tick() => {
                let file = heartbeat_file.clone();
                let written =
                    tokio::task::spawn_blocking(move || heartbeat::beat(&file, SystemTime::now()))
                        .await;
                if let Ok(Err(error)) = written {
                    tracing::warn!(file = %heartbeat_file.display(), %error,
                        "cannot write the heartbeat: the health check will fail");
                }
                continue;
            }
            _ = ticker.tick() => {}
        }
        let now = tokio::time::Instant::now();
        injected.retain(|i| i.until > now);
        let roll: f64 = rand::rng().random();
        if roll >= args.failure_probability {
            tracing::info!("chaos: no action this round");
            continue;
        }
        let target = targets[rand::rng().random_range(0..targets.len())].clone();
        let spec = random_fault(args.chaos_duration);
        match inject(&client, args.chaos_token.as_ref(), &target, &spec).await {
            Ok(id) => {
                tracing::warn!(%target, fault = ?spec.kind, rate = spec.rate,
                    duration_s = args.chaos_duration, %id, "chaos: fault injected");
                injected.push(Injected {
                    target,
                    id,
                    until: now + Duration::from_secs_f64(args.chaos_duration),
                });
            }
            Err(error) => tracing::error!(%target, "chaos: injection failed: {error:#}"),
        }
    }
    tracing::info!(
        in_place = injected.len(),
        "chaos monkey stopping; rolling back"
    );
    // Stopped: the health check must not find a fresh heartbeat of this run.
    let _ = std::fs::remove_file(&heartbeat_file);
    for fault in injected {
        let url = format!("{}/chaos/faults/{}", fault.target, fault.id);
        let request = crate::token::authorize(args.chaos_token.as_ref(), client.delete(&url));
        match request.send().await {
            Ok(response) => {
                tracing::info!(target = %fault.target, id = %fault.id, status = %response.status(),
                    "chaos: fault removed")
            }
            Err(error) => {
                tracing::warn!(target = %fault.target, id = %fault.id, %error,
                    "chaos: could not remove the fault (it expires by itself)")
            }
        }
    }
    Ok(())
}

/// Posts `spec` to `target`'s fault API; returns the fault's id.
async fn inject(
    client: &reqwest::Client,
    token: Option<&ChaosToken>,
    target: &str,
    spec: &FaultSpec,
) -> anyhow::Result<String> {
    let request = client.post(format!("{target}/chaos/faults"));
    let response = crate::token::authorize(token, request)
        .json(spec)
        .send()
        .await
        .context("the fault API did not answer")?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "the fault API answered {status}");
    let created: Created = response.json().await.context("no fault id in the answer")?;
    Ok(match created.id {
        serde_json::Value::String(id) => id,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(targets: &str) -> DaemonArgs {
        DaemonArgs {
            target_services: targets.to_owned(),
            chaos_interval: 300.0,
            failure_probability: 0.3,
            chaos_duration: 60.0,
            heartbeat_file: None,
            chaos_token: None,
        }
    }

    #[test]
    fn compose_names_and_urls_both_name_targets() {
        assert_eq!(
            args("llm_service_1, http://127.0.0.1:8002/")
                .targets()
                .unwrap(),
            ["http://llm_service_1:8000", "http://127.0.0.1:8002"]
        );
        assert!(args(" , ").targets().is_err());
        let mut bad = args("x");
        bad.failure_probability = 1.5;
        assert!(bad.targets().is_err());
        bad = args("x");
        bad.chaos_interval = 0.0;
        assert!(bad.targets().is_err());
    }

    #[test]
    fn every_random_fault_expires_by_itself_and_spares_half_the_requests() {
        for _ in 0..50 {
            let spec = random_fault(12.0);
            assert_eq!(spec.duration_s, Some(12.0));
            assert!((spec.rate - 0.5).abs() < f64::EPSILON);
            let json = serde_json::to_value(&spec).unwrap();
            let parsed: FaultSpec = serde_json::from_value(json).unwrap();
            assert_eq!(
                parsed.duration_s,
                Some(12.0),
                "the llm-service reads it back"
            );
        }
    }
}
