//! The HTTP routes; [`app`] puts them together with the cross-cutting layers.

pub mod chat;
pub mod errors;
pub mod generate;
mod relay;
pub mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_edge::{BadInput, JsonBody};
use llm_api::openai::OpenAiError;
use llm_api::{ErrorBody, FieldError};

use tower_http::timeout::RequestBodyTimeoutLayer;

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use resilience_core::fallback::Served;

use crate::middleware::{request_id, shed_load};
use crate::pool::Answer;

/// `x-served-by`.
static X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
/// `x-fallback-tier`.
static X_FALLBACK_TIER: HeaderName = HeaderName::from_static("x-fallback-tier");

/// The longest a client may take to send its request body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::state::Gateway;

/// The whole API. Load shedding guards the model routes only, so health, readiness and
/// metrics keep answering under overload.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let model_routes = Router::new()
        .route("/generate", post(generate::generate))
        .route("/v1/chat/completions", post(chat::chat_completions))
        // A client trickling its body must not hold an in-flight slot for ever.
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(from_fn_with_state(Arc::clone(&gateway), shed_load));
    Router::new()
        .merge(model_routes)
        .route("/v1/models", get(chat::models))
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

/// `x-served-by` and, from a fallback tier, `x-fallback-tier`.
pub(crate) fn tag(response: &mut Response, served: &Served<Answer>) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&served.response.served_by) {
        headers.insert(X_SERVED_BY.clone(), value);
    }
    if let Some(tier) = served.fallback_type() {
        headers.insert(
            X_FALLBACK_TIER.clone(),
            HeaderValue::from_static(tier.as_str()),
        );
    }
}

/// The request if it parsed and `validate` accepts it under the gateway's token limit; a
/// refused one is counted in the metrics.
pub(crate) fn validated<T>(
    gateway: &Gateway,
    body: Result<JsonBody<T>, BadInput>,
    validate: impl FnOnce(&T, u32) -> Result<(), FieldError>,
) -> Result<T, BadInput> {
    let result = body.and_then(|JsonBody(request)| {
        validate(&request, gateway.settings.max_tokens)
            .map(|()| request)
            .map_err(BadInput::invalid)
    });
    if let Err(bad) = &result {
        gateway
            .metrics
            .gateway_error("validation", bad.status.as_u16());
    }
    result
}

async fn not_found(
    request_id: Option<axum::Extension<crate::middleware::RequestId>>,
    req: axum::extract::Request,
) -> Response {
    if crate::middleware::is_openai(&req) {
        let body = OpenAiError::new(
            "invalid_request_error",
            format!("no such route: {}", req.uri().path()),
            None,
            Some("not_found".to_owned()),
        );
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let mut body = ErrorBody::new("not_found", "no such route", None);
    body.request_id = request_id.map(|axum::Extension(id)| id.0);
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
