//! `/health`, `/live`, `/ready`, `/metrics` and `/admin/*`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use resilience_core::health::HealthStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::Gateway;

fn discovery_json(gateway: &Gateway) -> Value {
    let snapshot = gateway.discovery.snapshot();
    let services: Vec<_> = gateway.pools.values().flat_map(|p| p.instances()).collect();
    json!({
        "available_services": gateway.available_services(),
        "known_services": snapshot.len(),
        "stale": snapshot.is_stale(),
        "last_error": snapshot.last_error,
        "registry": gateway.discovery.registry_backend(),
        "services": services,
    })
}

/// Overall status, the pool breaker, discovery, dependency checks: 200 unless unhealthy.
pub async fn health(State(gateway): State<Arc<Gateway>>) -> Response {
    let report = gateway.checks.check().await;
    let overall = report.overall_status;
    let code = StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::OK);
    let body = json!({
        "overall_status": overall,
        "status": overall,
        "circuit_breaker": gateway.pool_breaker.snapshot(),
        "service_discovery": discovery_json(&gateway),
        "health_checks": report.checks,
        "uptime_s": gateway.started.elapsed().as_secs_f64(),
        "in_flight": gateway.in_flight.load(Ordering::Relaxed),
        "ready": gateway.is_ready(),
        "timestamp_ms": report.checked_at_ms,
    });
    (code, Json(body)).into_response()
}

/// The process answers.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

/// 200 once the first health round finished, 503 before and after shutdown began.
pub async fn ready(State(gateway): State<Arc<Gateway>>) -> Response {
    if gateway.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        let status = if gateway.accepting.load(Ordering::Acquire) {
            "starting"
        } else {
            "draining"
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": status})),
        )
            .into_response()
    }
}

/// `?format=prometheus` forces the text exposition.
#[derive(Debug, Deserialize)]
pub struct MetricsQuery {
    format: Option<String>,
}

/// Prometheus text when asked for (Accept `text/plain` or OpenMetrics, or
/// `?format=prometheus`), the lab's JSON otherwise.
pub async fn metrics(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(query): Query<MetricsQuery>,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let wants_text = query.format.as_deref() == Some("prometheus")
        || accept.contains("text/plain")
        || accept.contains("application/openmetrics-text");
    if wants_text {
        let mut breakers = vec![(
            gateway.pool_breaker.name().to_owned(),
            gateway.pool_breaker.state().as_gauge(),
        )];
        for pool in gateway.pools.values() {
            for (id, snapshot) in pool.breaker_snapshots() {
                breakers.push((format!("instance:{id}"), snapshot.state.as_gauge()));
            }
        }
        for endpoint in &gateway.endpoints {
            for (id, snapshot) in endpoint.breaker_snapshots() {
                breakers.push((format!("endpoint:{id}"), snapshot.state.as_gauge()));
            }
        }
        return match gateway
            .metrics
            .render(&breakers, gateway.available_services())
        {
            Ok(text) => {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
            }
            Err(error) => {
                tracing::error!(%error, "cannot render metrics");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
    }
    let instance_breakers: std::collections::BTreeMap<_, _> = gateway
        .pools
        .values()
        .chain(&gateway.endpoints)
        .flat_map(|p| p.breaker_snapshots())
        .collect();
    let fallback = gateway.routes.for_model(None).chain.stats();
    let stats: Vec<_> = gateway
        .routes
        .iter()
        .map(|r| (r.name.clone(), r.chain.stats()))
        .collect();
    // Every route's requests (a context fallback counts in both routes it went through).
    let sum = |count: fn(&resilience_core::fallback::FallbackStats) -> u64| -> u64 {
        stats.iter().map(|(_, s)| count(s)).sum()
    };
    let requests = json!({
        "in_flight": gateway.in_flight.load(Ordering::Relaxed),
        "total": sum(|s| s.requests),
        "served": sum(|s| s.served),
        "served_by_fallback": sum(|s| s.served_by_fallback),
        "exhausted": sum(|s| s.exhausted),
    });
    let routes: serde_json::Map<String, Value> = stats
        .into_iter()
        .map(|(name, s)| (name, json!(s)))
        .collect();
    Json(json!({
        "circuit_breaker": gateway.pool_breaker.snapshot(),
        "circuit_breakers": instance_breakers,
        "fallback": fallback,
        "routes": routes,
        "service_discovery": discovery_json(&gateway),
        "requests": requests,
    }))
    .into_response()
}

/// Closes the pool breaker and every instance breaker.
pub async fn reset_circuit_breaker(State(gateway): State<Arc<Gateway>>) -> Json<Value> {
    gateway.pool_breaker.reset();
    for pool in gateway.pools.values().chain(&gateway.endpoints) {
        pool.reset_instance_breakers();
    }
    tracing::warn!("circuit breakers reset by an operator");
    Json(
        json!({"message": "Circuit breaker reset successfully", "state": gateway.pool_breaker.state()}),
    )
}

/// Pools, instances, breakers and recent transitions.
pub async fn admin_status(State(gateway): State<Arc<Gateway>>) -> Json<Value> {
    let health = gateway.checks.check().await;
    Json(json!({
        "overall_status": health.overall_status,
        "pools": gateway.pools.iter().map(|(name, pool)| (name.clone(), json!({
            "instances": pool.instances(),
            "breakers": pool.breaker_snapshots(),
        }))).collect::<serde_json::Map<String, Value>>(),
        "endpoints": gateway.endpoints.iter().map(|pool| json!({
            "id": pool.name(),
            "instances": pool.instances(),
            "breakers": pool.breaker_snapshots(),
        })).collect::<Vec<_>>(),
        "circuit_breaker": gateway.pool_breaker.snapshot(),
        "transitions": gateway.transitions(),
        "cache": gateway.cache.stats(),
        "ready": gateway.is_ready(),
        "healthy": health.overall_status != HealthStatus::Unhealthy,
    }))
}
