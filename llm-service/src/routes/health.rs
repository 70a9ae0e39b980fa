//! `GET /health`, `GET /live`, `GET /model/health` and `GET /metrics`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm_api::health::ServiceHealth;
use resilience_core::clock::unix_millis;
use resilience_core::health::HealthStatus;

use crate::health::model_outcome;
use crate::state::AppState;

/// `GET /live`: 200 while the process serves requests, for an orchestrator's liveness
/// probe (`/health` also judges the dependencies, which must not get a pod restarted).
#[utoipa::path(
    get,
    path = "/live",
    tag = "operations",
    responses((status = 200, description = "The process serves requests", body = crate::openapi::Alive))
)]
pub async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "alive"}))
}

/// The composite health: 200 healthy or degraded, 503 unhealthy.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Healthy or degraded", body = ServiceHealth),
        (status = 503, description = "Unhealthy", body = ServiceHealth),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let report = state.health.check().await;
    let status = StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::OK);
    let body = ServiceHealth {
        overall_status: report.overall_status.as_str().to_owned(),
        service_id: state.config.service_id.clone(),
        model: state.config.model_name.clone(),
        version: state.config.service_version.clone(),
        tier: state.config.service_tier.clone(),
        uptime_s: state.started.elapsed().as_secs_f64(),
        in_flight: state.in_flight.load(Ordering::Relaxed),
        active_faults: state.faults.active_kinds(),
        registration: state.registration.health(),
        checks: report
            .checks
            .iter()
            .map(|(name, check)| {
                (
                    name.clone(),
                    serde_json::to_value(check).unwrap_or_default(),
                )
            })
            .collect(),
        timestamp_ms: unix_millis(std::time::SystemTime::now()),
    };
    (status, Json(body)).into_response()
}

/// The model alone: its latency against the SLA, and the `unhealthy` fault.
#[utoipa::path(
    get,
    path = "/model/health",
    tag = "operations",
    responses(
        (status = 200, description = "Healthy or degraded", body = crate::openapi::ModelHealth),
        (status = 503, description = "Unhealthy", body = crate::openapi::ModelHealth),
    )
)]
pub async fn model_health(State(state): State<AppState>) -> Response {
    let recent = state.metrics.recent_average_ms();
    let outcome = model_outcome(recent, state.config.response_time_sla);
    let status = if state.faults.is_unhealthy() {
        HealthStatus::Unhealthy
    } else {
        outcome.status
    };
    let body = serde_json::json!({
        "status": status.as_str(),
        "model": state.config.model_name,
        "service_id": state.config.service_id,
        "sla_ms": state.config.response_time_sla,
        "recent_average_ms": recent,
        "message": outcome.message,
    });
    let code = StatusCode::from_u16(status.http_status()).unwrap_or(StatusCode::OK);
    (code, Json(body)).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 500, description = "The metrics could not be rendered"),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render(&state.faults.active_kinds()) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "could not render metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
