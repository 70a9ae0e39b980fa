//! Complete gateway and llm-service documents for the fakes and the unit tests, built from
//! the `llm-api` types the real binaries write, so the fakes stay in step with them.

use std::collections::BTreeMap;
use std::time::Duration;

use llm_api::breaker::{BreakerCounters, BreakerState, BreakerView, BreakerWindow};
use llm_api::envelope::{FallbackReason, FallbackType, GenerateData, GenerateSuccess};
use llm_api::fault::{FaultSpec, FaultView};
use llm_api::gateway::{CheckView, DiscoveryView, GatewayHealth, HealthStatus, ServiceView};
use llm_api::health::{RegistrationHealth, ServiceHealth};
use llm_api::stats::{FallbackStats, GatewayMetrics, RequestCounts};

use crate::suite::client::Answer;

/// The id a fallback answer names in `served_by`.
pub const FALLBACK_MANAGER: &str = "fallback_manager";

/// The pool breaker in `state`, with `failures` counted.
pub fn breaker(state: BreakerState, failures: u64) -> BreakerView {
    BreakerView {
        consecutive_failures: 0,
        counters: BreakerCounters {
            failures,
            transitions: u64::from(state != BreakerState::Closed),
            ..BreakerCounters::default()
        },
        forced_open: false,
        in_flight: 0,
        name: "llm-service".into(),
        reopens: 0,
        retry_after_ms: None,
        state,
        window: BreakerWindow::default(),
    }
}

/// One instance of the primary pool.
pub fn service(id: &str, url: String, healthy: bool) -> ServiceView {
    ServiceView {
        circuit_state: BreakerState::Closed,
        healthy,
        id: id.to_owned(),
        model: Some("sim".into()),
        tier: "primary".into(),
        url,
    }
}

/// A non-critical dependency check, healthy or not.
pub fn check(healthy: bool) -> CheckView {
    CheckView {
        critical: false,
        details: None,
        duration_ms: 1,
        message: None,
        status: if healthy {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        },
    }
}

/// The discovery view of `services`.
pub fn discovery(services: Vec<ServiceView>) -> DiscoveryView {
    let available = services.iter().filter(|s| s.healthy).count();
    DiscoveryView {
        available_services: u64::try_from(available).unwrap_or(u64::MAX),
        known_services: u64::try_from(services.len()).unwrap_or(u64::MAX),
        last_error: None,
        registry: Some("redis".into()),
        services,
        stale: false,
    }
}

/// The gateway's `/health`.
pub fn health(
    overall: HealthStatus,
    breaker: BreakerView,
    services: Vec<ServiceView>,
    checks: &[(&str, bool)],
) -> GatewayHealth {
    GatewayHealth {
        circuit_breaker: breaker,
        health_checks: checks
            .iter()
            .map(|(name, ok)| ((*name).to_owned(), check(*ok)))
            .collect(),
        in_flight: 0,
        overall_status: overall,
        ready: true,
        service_discovery: discovery(services),
        status: overall,
        timestamp_ms: 1_700_000_000_000,
        uptime_s: 1.0,
    }
}

/// A fallback chain that counted nothing.
fn chain() -> FallbackStats {
    FallbackStats {
        cache: None,
        exhausted: 0,
        rejected: 0,
        requests: 0,
        served: 0,
        served_by_fallback: 0,
        tiers: BTreeMap::new(),
    }
}

/// The gateway's JSON `/metrics` around the pool `breaker`, with two instance breakers.
pub fn metrics(breaker: BreakerView) -> GatewayMetrics {
    let instances = ["llm_service_1", "llm_service_2"]
        .map(|id| (id.to_owned(), self::breaker(BreakerState::Closed, 0)));
    GatewayMetrics {
        circuit_breaker: breaker,
        circuit_breakers: BTreeMap::from(instances),
        fallback: chain(),
        requests: RequestCounts::default(),
        routes: BTreeMap::from([("default".to_owned(), chain())]),
        service_discovery: discovery(Vec::new()),
    }
}

/// A `/generate` success served by `served_by`, or by a fallback tier for a reason.
pub fn success(
    served_by: &str,
    fallback: Option<(FallbackType, FallbackReason)>,
) -> GenerateSuccess {
    GenerateSuccess::new(GenerateData {
        fallback_reason: fallback.map(|(_, reason)| reason),
        fallback_type: fallback.map(|(tier, _)| tier),
        fallback_used: fallback.is_some(),
        model_used: "sim".into(),
        request_id: "req-1".into(),
        response: "an answer".into(),
        response_time_ms: 1,
        served_by: served_by.to_owned(),
        tokens_used: 2,
    })
}

/// A success served by an instance, or by the template tier when `fallback`.
pub fn served(by: &str, fallback: bool) -> GenerateSuccess {
    if fallback {
        let tier = (FallbackType::Template, FallbackReason::UpstreamError);
        success(FALLBACK_MANAGER, Some(tier))
    } else {
        success(by, None)
    }
}

/// An answer of `status` with `body`, after `elapsed`.
pub fn answer(status: u16, body: &impl serde::Serialize, elapsed: Duration) -> Answer {
    let body = serde_json::to_value(body).unwrap_or_default();
    Answer::new(Some(status), body, elapsed)
}

/// An llm-service `/health` reading `overall`.
pub fn service_health(id: &str, overall: HealthStatus) -> ServiceHealth {
    ServiceHealth {
        overall_status: overall.as_str().to_owned(),
        service_id: id.to_owned(),
        model: "sim".into(),
        version: "test".into(),
        tier: "primary".into(),
        uptime_s: 1.0,
        in_flight: 0,
        active_faults: Vec::new(),
        registration: RegistrationHealth {
            backend: "redis".into(),
            registered: true,
            last_error: None,
        },
        checks: BTreeMap::new(),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// The fault llm-service reports having added for `spec`.
pub fn fault(id: &str, spec: FaultSpec) -> FaultView {
    FaultView {
        id: id.to_owned(),
        expires_in_ms: spec.duration_s.map(|_| 1_000),
        remaining: spec.count,
        spec,
        hits: 0,
    }
}
