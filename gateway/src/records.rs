//! What the gateway records in its history (the `history` crate writes it): breaker
//! transitions, instance health changes and periodic samples, one row per answer of a model
//! route. Each event becomes a typed [`Record`] here; the writer's queue takes it without
//! waiting.

use std::sync::Arc;
use std::time::Duration;

use history::{BreakerRecord, HealthRecord, History, Record};
use llm_api::history::HealthState;
use resilience_core::breaker::{Transition, TransitionReason};
use resilience_core::discovery::DiscoveryClient;
use resilience_core::health::{HealthTracker, InstanceStatus};

use crate::wire;

/// A breaker transition (at `at_ms`, Unix milliseconds) as a `circuit_breaker_metrics` row.
pub fn breaker(name: &str, t: &Transition, at_ms: u64) -> Record {
    Record::Breaker(BreakerRecord {
        service: name.to_owned(),
        at_ms: millis(at_ms),
        from: wire::state(t.from),
        to: wire::state(t.to),
        reason: wire::reason(t.reason).kind,
        failure_count: count(t.counters.failures),
        success_count: count(t.counters.successes),
        // The probes that decided a HALF_OPEN period: all of them when it closed, the one
        // that failed when it reopened.
        half_open_attempts: match t.reason {
            TransitionReason::ProbesSucceeded { count } => i64::from(count),
            TransitionReason::ProbeFailed => 1,
            _ => 0,
        },
    })
}

/// An instance's health (its id, or its URL when discovery no longer knows it).
pub fn health(
    service: String,
    status: InstanceStatus,
    at_ms: u64,
    error: Option<String>,
    change: bool,
) -> Record {
    Record::Health(HealthRecord {
        service,
        at_ms: millis(at_ms),
        status: match status {
            InstanceStatus::Healthy => HealthState::Healthy,
            InstanceStatus::Unhealthy => HealthState::Unhealthy,
            InstanceStatus::Unknown => HealthState::Unknown,
        },
        response_time_ms: None,
        error,
        change,
    })
}

/// The id of the instance at `url`, as the history names it.
pub fn instance_id(discovery: &DiscoveryClient, url: &str) -> String {
    discovery
        .snapshot()
        .instances()
        .iter()
        .find(|i| i.url == url)
        .map_or_else(|| url.to_owned(), |i| i.id.clone())
}

/// Records every known instance's status every `interval`, until the history goes.
pub fn spawn_sampler(
    history: &Arc<History>,
    discovery: Arc<DiscoveryClient>,
    tracker: Arc<HealthTracker>,
    interval: Duration,
) {
    let history = Arc::downgrade(history);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(history) = history.upgrade() else {
                return;
            };
            let now = resilience_core::clock::unix_millis(std::time::SystemTime::now());
            for instance in discovery.snapshot().instances() {
                let status = tracker
                    .status(&instance.url)
                    .unwrap_or(InstanceStatus::Unknown);
                history.record(health(instance.id.clone(), status, now, None, false));
            }
        }
    });
}

fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
