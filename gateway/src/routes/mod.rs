//! The HTTP routes; [`app`] puts them together with the cross-cutting layers.

pub mod generate;
pub mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use llm_api::ErrorBody;

use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::middleware::{request_id, shed_load};

/// The longest a client may take to send its request body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::state::Gateway;

/// The whole API. Load shedding guards the model routes only, so health, readiness and
/// metrics keep answering under overload.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let model_routes = Router::new()
        .route("/generate", post(generate::generate))
        // A client trickling its body must not hold an in-flight slot for ever.
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(from_fn_with_state(Arc::clone(&gateway), shed_load));
    Router::new()
        .merge(model_routes)
        .route("/health", get(status::health))
        .route("/live", get(status::live))
        .route("/ready", get(status::ready))
        .route("/metrics", get(status::metrics))
        .route(
            "/admin/reset-circuit-breaker",
            post(status::reset_circuit_breaker),
        )
        .route("/admin/status", get(status::admin_status))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(http_edge::BODY_LIMIT))
        .layer(from_fn(request_id))
        .with_state(gateway)
}

async fn not_found(
    request_id: Option<axum::Extension<crate::middleware::RequestId>>,
) -> (StatusCode, axum::Json<ErrorBody>) {
    let mut body = ErrorBody::new("not_found", "no such route", None);
    body.request_id = request_id.map(|axum::Extension(id)| id.0);
    (StatusCode::NOT_FOUND, axum::Json(body))
}
