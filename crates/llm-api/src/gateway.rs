//! The gateway's `/health`, `/admin/status`, `/admin/signals` and
//! `POST /admin/reset-circuit-breaker` answers, and the discovery view `/health` and
//! `/metrics` share.
//!
//! Fields are declared in alphabetical order: the gateway wrote these objects through
//! `serde_json::Value`, whose objects sort their keys, so the bytes stay the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::breaker::{BreakerState, BreakerView, TransitionView};
use crate::stats::CacheStats;

/// A health verdict: JSON `healthy`, `degraded` or `unhealthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Serving, with reduced capacity or a non-critical dependency down.
    Degraded,
    /// Not fit to serve (HTTP 503).
    Unhealthy,
}

impl HealthStatus {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// `GET /health`: 200 unless `overall_status` is `unhealthy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GatewayHealth {
    /// The pool breaker.
    pub circuit_breaker: BreakerView,
    /// Each dependency check, by name (`redis`, `system_resources`, …).
    pub health_checks: BTreeMap<String, CheckView>,
    /// Requests being answered now.
    pub in_flight: u64,
    /// The aggregate verdict.
    pub overall_status: HealthStatus,
    /// Whether the first health round finished and shutdown has not begun.
    pub ready: bool,
    /// Discovered instances.
    pub service_discovery: DiscoveryView,
    /// The same as `overall_status`.
    pub status: HealthStatus,
    /// Unix milliseconds of the checks.
    pub timestamp_ms: u64,
    /// Seconds since the gateway started.
    pub uptime_s: f64,
}

/// One dependency check of [`GatewayHealth`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// Whether failing it makes the gateway unhealthy rather than degraded.
    pub critical: bool,
    /// Structured readings, if any (their shape is the check's own).
    pub details: Option<Value>,
    /// How long the check took, in milliseconds.
    pub duration_ms: u64,
    /// An explanation, if any.
    pub message: Option<String>,
    /// The verdict.
    pub status: HealthStatus,
}

/// `service_discovery` of `/health` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiscoveryView {
    /// Instances that pass their health checks.
    pub available_services: u64,
    /// Instances discovery knows.
    pub known_services: u64,
    /// The registry's last error, while it fails.
    pub last_error: Option<String>,
    /// The registry backend (`redis`), or `null` with a static list only.
    pub registry: Option<String>,
    /// Every instance of every pool.
    pub services: Vec<ServiceView>,
    /// Whether the list is the last good one of a failing registry.
    pub stale: bool,
}

/// One instance of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    /// Its instance breaker's state.
    pub circuit_state: BreakerState,
    /// Whether the health tracker lets it take traffic.
    pub healthy: bool,
    /// Its id (`SERVICE_ID`).
    pub id: String,
    /// Its `model` label, or the model it last answered with.
    pub model: Option<String>,
    /// Its tier (`primary`, `secondary`, …).
    pub tier: String,
    /// Its base URL.
    pub url: String,
}

/// `GET /admin/status`: pools, endpoints, breakers and recent transitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdminStatus {
    /// The response cache's counters.
    pub cache: CacheStats,
    /// The pool breaker.
    pub circuit_breaker: BreakerView,
    /// The OpenAI-compatible endpoint targets.
    pub endpoints: Vec<EndpointView>,
    /// Whether `overall_status` is not `unhealthy`.
    pub healthy: bool,
    /// The aggregate health verdict.
    pub overall_status: HealthStatus,
    /// The pools of discovered instances, by tier.
    pub pools: BTreeMap<String, PoolView>,
    /// Whether the gateway is ready.
    pub ready: bool,
    /// Recent breaker transitions, oldest first.
    pub transitions: Vec<TransitionView>,
}

/// One pool of [`AdminStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    /// Each member's breaker, by id.
    pub breakers: BTreeMap<String, BreakerView>,
    /// Its members.
    pub instances: Vec<ServiceView>,
}

/// One endpoint target of [`AdminStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
    /// Its breaker, by id.
    pub breakers: BTreeMap<String, BreakerView>,
    /// The endpoint pool's name.
    pub id: String,
    /// Its one member.
    pub instances: Vec<ServiceView>,
}

/// The answer of `POST /admin/reset-circuit-breaker`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResetAnswer {
    /// For a person.
    pub message: String,
    /// The pool breaker's state after the reset.
    pub state: BreakerState,
}

impl ResetAnswer {
    /// What the gateway says after a reset.
    pub const MESSAGE: &'static str = "Circuit breaker reset successfully";
}

/// `GET /admin/signals`: the gateway's golden signals as running totals since it started,
/// read from its metrics at `at_ms`. Two readings give the request rate, the error and
/// fallback rates and the latency quantiles over the time between them (the status page
/// polls it); one reading and `uptime_s` give them since the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GoldenSignals {
    /// When the totals were read, in Unix milliseconds (the gateway's clock).
    pub at_ms: u64,
    /// Answers of the model routes with a 5xx status, the gateway's own included.
    pub errors: u64,
    /// Answers of the model routes served by a fallback tier (any but `primary`), as
    /// `fallback_responses_total` counts them.
    pub fallbacks: u64,
    /// Requests being answered now.
    pub in_flight: u64,
    /// The latency of the answers, as `llm_request_duration_seconds` buckets them.
    pub latency: LatencyHistogram,
    /// Answers of the model routes, the gateway's own errors included
    /// (`llm_requests_total`).
    pub requests: u64,
    /// Seconds since the gateway started, when every total was 0.
    pub uptime_s: f64,
}

/// A latency histogram of [`GoldenSignals`], summed over every service, model and route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyHistogram {
    /// The finite upper bounds of the buckets, in seconds, ascending.
    pub bounds_s: Vec<f64>,
    /// Answers that took at most each bound (cumulative, like Prometheus' `le` buckets):
    /// as many as `bounds_s`.
    pub counts: Vec<u64>,
    /// Every answer timed (the `+Inf` bucket).
    pub total: u64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::breaker::tests::closed;
    use crate::breaker::{TransitionKind, TransitionReason};

    fn service() -> (ServiceView, &'static str) {
        let view = ServiceView {
            circuit_state: BreakerState::Closed,
            healthy: true,
            id: "llm_service_1".into(),
            model: None,
            tier: "primary".into(),
            url: "http://127.0.0.1:8001".into(),
        };
        let json = concat!(
            r#"{"circuit_state":"CLOSED","healthy":true,"id":"llm_service_1","model":null,"#,
            r#""tier":"primary","url":"http://127.0.0.1:8001"}"#
        );
        (view, json)
    }

    /// One healthy instance from a static list, and its JSON.
    pub(crate) fn discovery() -> (DiscoveryView, String) {
        let (service, service_json) = service();
        let view = DiscoveryView {
            available_services: 1,
            known_services: 1,
            last_error: None,
            registry: None,
            services: vec![service],
            stale: false,
        };
        let json = format!(
            concat!(
                r#"{{"available_services":1,"known_services":1,"last_error":null,"#,
                r#""registry":null,"services":[{}],"stale":false}}"#
            ),
            service_json
        );
        (view, json)
    }

    #[test]
    fn health_round_trips() {
        let (breaker, breaker_json) = closed();
        let (discovery, discovery_json) = discovery();
        let redis = CheckView {
            critical: false,
            details: Some(serde_json::json!({"latency_ms": 1})),
            duration_ms: 2,
            message: None,
            status: HealthStatus::Healthy,
        };
        let health = GatewayHealth {
            circuit_breaker: breaker,
            health_checks: BTreeMap::from([("redis".to_owned(), redis)]),
            in_flight: 0,
            overall_status: HealthStatus::Degraded,
            ready: true,
            service_discovery: discovery,
            status: HealthStatus::Degraded,
            timestamp_ms: 1_700_000_000_000,
            uptime_s: 12.5,
        };
        let json = format!(
            concat!(
                r#"{{"circuit_breaker":{},"health_checks":{{"redis":{{"critical":false,"#,
                r#""details":{{"latency_ms":1}},"duration_ms":2,"message":null,"#,
                r#""status":"healthy"}}}},"in_flight":0,"overall_status":"degraded","#,
                r#""ready":true,"service_discovery":{},"status":"degraded","#,
                r#""timestamp_ms":1700000000000,"uptime_s":12.5}}"#
            ),
            breaker_json, discovery_json
        );
        assert_eq!(serde_json::to_string(&health).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<GatewayHealth>(&json).unwrap(),
            health
        );
    }

    #[test]
    fn admin_status_round_trips() {
        let (breaker, breaker_json) = closed();
        let (service, service_json) = service();
        let breakers = BTreeMap::from([("llm_service_1".to_owned(), breaker.clone())]);
        let status = AdminStatus {
            cache: CacheStats::default(),
            circuit_breaker: breaker,
            endpoints: vec![EndpointView {
                breakers: BTreeMap::new(),
                id: "openai:gpt".into(),
                instances: vec![],
            }],
            healthy: true,
            overall_status: HealthStatus::Healthy,
            pools: BTreeMap::from([(
                "primary".to_owned(),
                PoolView {
                    breakers,
                    instances: vec![service],
                },
            )]),
            ready: true,
            transitions: vec![TransitionView {
                at_ms: 5,
                breaker: "llm-service".into(),
                from: BreakerState::Open,
                reason: TransitionReason {
                    count: None,
                    kind: TransitionKind::ManualReset,
                    rate: None,
                },
                to: BreakerState::Closed,
            }],
        };
        let json = format!(
            concat!(
                r#"{{"cache":{{"bytes":0,"capacity":0,"entries":0,"evictions":0,"#,
                r#""expirations":0,"hits":0,"inserts":0,"max_bytes":0,"misses":0,"#,
                r#""oversized":0,"seeded":0,"seeded_hits":0,"ttl_ms":0}},"#,
                r#""circuit_breaker":{b},"endpoints":[{{"breakers":{{}},"id":"openai:gpt","#,
                r#""instances":[]}}],"healthy":true,"overall_status":"healthy","#,
                r#""pools":{{"primary":{{"breakers":{{"llm_service_1":{b}}},"#,
                r#""instances":[{s}]}}}},"ready":true,"transitions":[{{"at_ms":5,"#,
                r#""breaker":"llm-service","from":"OPEN","reason":{{"kind":"manual_reset"}},"#,
                r#""to":"CLOSED"}}]}}"#
            ),
            b = breaker_json,
            s = service_json
        );
        assert_eq!(serde_json::to_string(&status).unwrap(), json);
        assert_eq!(serde_json::from_str::<AdminStatus>(&json).unwrap(), status);
    }

    #[test]
    fn golden_signals_round_trip() {
        let signals = GoldenSignals {
            at_ms: 1_700_000_000_000,
            errors: 1,
            fallbacks: 2,
            in_flight: 0,
            latency: LatencyHistogram {
                bounds_s: vec![0.01, 0.05],
                counts: vec![3, 9],
                total: 10,
            },
            requests: 11,
            uptime_s: 12.5,
        };
        let json = concat!(
            r#"{"at_ms":1700000000000,"errors":1,"fallbacks":2,"in_flight":0,"#,
            r#""latency":{"bounds_s":[0.01,0.05],"counts":[3,9],"total":10},"#,
            r#""requests":11,"uptime_s":12.5}"#
        );
        assert_eq!(serde_json::to_string(&signals).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<GoldenSignals>(json).unwrap(),
            signals
        );
    }

    #[test]
    fn the_reset_answer_round_trips() {
        let answer = ResetAnswer {
            message: ResetAnswer::MESSAGE.into(),
            state: BreakerState::Closed,
        };
        let json = r#"{"message":"Circuit breaker reset successfully","state":"CLOSED"}"#;
        assert_eq!(serde_json::to_string(&answer).unwrap(), json);
        assert_eq!(serde_json::from_str::<ResetAnswer>(json).unwrap(), answer);
    }

    #[test]
    fn readers_ignore_fields_a_newer_gateway_adds() {
        let (_, json) = service();
        let newer = json.replacen('{', r#"{"weight":3,"#, 1);
        assert_eq!(
            serde_json::from_str::<ServiceView>(&newer).unwrap(),
            service().0
        );
        for status in [
            HealthStatus::Healthy,
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
