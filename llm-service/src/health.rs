//! The service's composite health: system resources, the model's latency against its SLA,
//! the `unhealthy` fault, and the registration when a registry is configured.

use std::sync::Arc;

use resilience_core::health::{
    CheckOutcome, CompositeHealthChecker, FnCheck, SystemResourcesCheck,
};

use crate::config::Config;
use crate::faults::FaultSet;
use crate::metrics::Metrics;
use crate::registration::RegistrationState;

/// Builds the checker `/health` runs.
pub fn checker(
    config: &Config,
    faults: &Arc<FaultSet>,
    metrics: &Arc<Metrics>,
    registration: &Arc<RegistrationState>,
) -> CompositeHealthChecker {
    let faults = Arc::clone(faults);
    let sla_ms = config.response_time_sla;
    let latency = Arc::clone(metrics);
    let mut checker = CompositeHealthChecker::new()
        .with_check(SystemResourcesCheck::new())
        .with_check(FnCheck::new("fault_injection", true, move || {
            let unhealthy = faults.is_unhealthy();
            async move {
                if unhealthy {
                    CheckOutcome::unhealthy("an `unhealthy` fault is active")
                } else {
                    CheckOutcome::healthy()
                }
            }
        }))
        .with_check(FnCheck::new("model", false, move || {
            let outcome = model_outcome(latency.recent_average_ms(), sla_ms);
            async move { outcome }
        }));
    if registration.enabled() {
        let registration = Arc::clone(registration);
        checker = checker.with_check(FnCheck::new("registry", false, move || {
            let health = registration.health();
            async move {
                if health.registered {
                    CheckOutcome::healthy()
                } else {
                    CheckOutcome::degraded(
                        health
                            .last_error
                            .unwrap_or_else(|| "not registered yet".to_owned()),
                    )
                }
            }
        }));
    }
    checker
}

/// `model` check: degraded when the recent average answer time exceeds the SLA.
pub fn model_outcome(recent_average_ms: Option<u64>, sla_ms: u64) -> CheckOutcome {
    let details = serde_json::json!({ "sla_ms": sla_ms, "recent_average_ms": recent_average_ms });
    match recent_average_ms {
        Some(avg) if avg > sla_ms => CheckOutcome::degraded(format!(
            "recent answers average {avg} ms, over the {sla_ms} ms SLA"
        ))
        .with_details(details),
        _ => CheckOutcome::healthy().with_details(details),
    }
}

#[cfg(test)]
mod tests {
    use resilience_core::health::HealthStatus;

    use super::*;

    #[test]
    fn the_model_degrades_only_over_its_sla() {
        assert_eq!(model_outcome(None, 100).status, HealthStatus::Healthy);
        assert_eq!(model_outcome(Some(100), 100).status, HealthStatus::Healthy);
        assert_eq!(model_outcome(Some(101), 100).status, HealthStatus::Degraded);
    }
}
