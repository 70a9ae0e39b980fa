//! `/health`, `/live`, `/ready`, `/metrics` and `/admin/*`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm_api::gateway::{
    AdminStatus, DiscoveryView, EndpointView, GatewayHealth, PoolView, ResetAnswer,
};
use llm_api::stats::{FallbackStats, GatewayMetrics, RequestCounts};
use resilience_core::health::HealthStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::metrics::Scrape;
use crate::pool::PoolLoad;
use crate::state::Gateway;
use crate::wire;

fn discovery(gateway: &Gateway) -> DiscoveryView {
    let snapshot = gateway.discovery.snapshot();
    let services: Vec<_> = gateway.pools.values().flat_map(|p| p.instances()).collect();
    DiscoveryView {
        available_services: count(gateway.available_services()),
        known_services: count(snapshot.len()),
        last_error: snapshot.last_error.clone(),
        registry: gateway.discovery.registry_backend().map(str::to_owned),
        services: wire::services(&services),
        stale: snapshot.is_stale(),
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Overall status, the pool breaker, discovery, dependency checks: 200 unless unhealthy.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Healthy or degraded", body = GatewayHealth),
        (status = 503, description = "Unhealthy", body = GatewayHealth),
    )
)]
pub async fn health(State(gateway): State<Arc<Gateway>>) -> Response {
    let report = gateway.checks.check().await;
    let overall = wire::health(report.overall_status);
    let code = StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::OK);
    let body = GatewayHealth {
        circuit_breaker: wire::breaker(&gateway.pool_breaker.snapshot()),
        health_checks: wire::checks(&report.checks),
        in_flight: count(gateway.in_flight.load(Ordering::Relaxed)),
        overall_status: overall,
        ready: gateway.is_ready(),
        service_discovery: discovery(&gateway),
        status: overall,
        timestamp_ms: report.checked_at_ms,
        uptime_s: gateway.started.elapsed().as_secs_f64(),
    };
    (code, Json(body)).into_response()
}

/// The process answers.
#[utoipa::path(
    get,
    path = "/live",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = crate::openapi::Alive))
)]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

/// 200 once the first health round finished; 503 before, after shutdown began, and while
/// saturated (every connection or in-flight slot taken), so a load balancer sends elsewhere.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = crate::openapi::Readiness),
        (status = 503, description = "Starting, draining, or saturated (every connection or in-flight slot taken)", body = crate::openapi::Readiness),
    )
)]
pub async fn ready(State(gateway): State<Arc<Gateway>>) -> Response {
    if gateway.is_ready() {
        if let Some(why) = gateway.saturated() {
            let body = Json(json!({"status": "saturated", "reason": why}));
            return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        }
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// `prometheus` for the text exposition; anything else, or nothing, for JSON.
    format: Option<String>,
}

/// Prometheus text when asked for (Accept `text/plain` or OpenMetrics, or
/// `?format=prometheus`), the lab's JSON otherwise.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    params(MetricsQuery),
    responses(
        (status = 200, description = "The lab's JSON, or the Prometheus text exposition when asked for",
            content(
                (GatewayMetrics = "application/json"),
                (String = "text/plain"),
            )),
        (status = 500, description = "The Prometheus text could not be rendered"),
    )
)]
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
    gateway
        .metrics
        .edge(gateway.connections.stats(), gateway.uploads.stats());
    gateway
        .metrics
        .limiter_active(gateway.limits.status().active.as_str());
    if wants_text {
        let targets = || gateway.pools.values().chain(&gateway.endpoints);
        let mut breakers = vec![(
            gateway.pool_breaker.name().to_owned(),
            gateway.pool_breaker.snapshot(),
        )];
        breakers.extend(targets().flat_map(|pool| pool.labelled_breaker_snapshots()));
        let pools: Vec<(&str, PoolLoad)> =
            targets().map(|pool| (pool.name(), pool.load())).collect();
        let scrape = Scrape {
            breakers: &breakers,
            available: gateway.available_services(),
            pools: &pools,
            max_in_flight: gateway.settings.max_concurrent_requests,
        };
        if let Some(history) = &gateway.history {
            history.observe_queue();
        }
        return match gateway.metrics.render(&scrape) {
            Ok(text) => {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
            }
            Err(error) => {
                tracing::error!(%error, "cannot render metrics");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
    }
    let instance_breakers: BTreeMap<_, _> = gateway
        .pools
        .values()
        .chain(&gateway.endpoints)
        .flat_map(|p| p.breaker_snapshots())
        .collect();
    let fallback = wire::fallback(&gateway.routes.for_model(None).chain.stats());
    let routes: BTreeMap<String, FallbackStats> = gateway
        .routes
        .iter()
        .map(|r| (r.name.clone(), wire::fallback(&r.chain.stats())))
        .collect();
    // Every route's requests (a context fallback counts in both routes it went through).
    let sum = |count: fn(&FallbackStats) -> u64| -> u64 { routes.values().map(count).sum() };
    let requests = RequestCounts {
        exhausted: sum(|s| s.exhausted),
        in_flight: count(gateway.in_flight.load(Ordering::Relaxed)),
        served: sum(|s| s.served),
        served_by_fallback: sum(|s| s.served_by_fallback),
        total: sum(|s| s.requests),
    };
    Json(GatewayMetrics {
        circuit_breaker: wire::breaker(&gateway.pool_breaker.snapshot()),
        circuit_breakers: wire::breakers(&instance_breakers),
        fallback,
        requests,
        routes,
        service_discovery: discovery(&gateway),
    })
    .into_response()
}

/// Closes the pool breaker and every instance breaker.
#[utoipa::path(
    post,
    path = "/admin/reset-circuit-breaker",
    tag = "admin",
    responses(
        (status = 200, description = "Every breaker is closed", body = ResetAnswer),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::ErrorBody),
        (status = 403, description = "The credentials lack the `admin` scope; or, in every mode, a cross-site browser request or an address outside `ADMIN_ALLOW`", body = llm_api::ErrorBody),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn reset_circuit_breaker(State(gateway): State<Arc<Gateway>>) -> Json<ResetAnswer> {
    gateway.pool_breaker.reset();
    for pool in gateway.pools.values().chain(&gateway.endpoints) {
        pool.reset_instance_breakers();
    }
    tracing::warn!("circuit breakers reset by an operator");
    Json(ResetAnswer {
        message: ResetAnswer::MESSAGE.to_owned(),
        state: wire::state(gateway.pool_breaker.state()),
    })
}

/// Pools, instances, breakers and recent transitions.
#[utoipa::path(
    get,
    path = "/admin/status",
    tag = "admin",
    responses(
        (status = 200, description = "Pools, endpoints, breakers and recent transitions", body = AdminStatus),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::ErrorBody),
        (status = 403, description = "The credentials lack the `admin` scope; or, in every mode, a cross-site browser request or an address outside `ADMIN_ALLOW`", body = llm_api::ErrorBody),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn admin_status(State(gateway): State<Arc<Gateway>>) -> Json<AdminStatus> {
    let health = gateway.checks.check().await;
    let pools = gateway
        .pools
        .iter()
        .map(|(name, pool)| {
            let view = PoolView {
                breakers: wire::breakers(&pool.breaker_snapshots()),
                instances: wire::services(&pool.instances()),
            };
            (name.clone(), view)
        })
        .collect();
    let endpoints = gateway
        .endpoints
        .iter()
        .map(|pool| EndpointView {
            breakers: wire::breakers(&pool.breaker_snapshots()),
            id: pool.name().to_owned(),
            instances: wire::services(&pool.instances()),
        })
        .collect();
    Json(AdminStatus {
        cache: wire::cache(&gateway.cache.stats()),
        circuit_breaker: wire::breaker(&gateway.pool_breaker.snapshot()),
        endpoints,
        healthy: health.overall_status != HealthStatus::Unhealthy,
        overall_status: wire::health(health.overall_status),
        pools,
        ready: gateway.is_ready(),
        transitions: gateway.transitions().iter().map(wire::transition).collect(),
    })
}
