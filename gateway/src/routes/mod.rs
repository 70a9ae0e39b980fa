//! The HTTP routes; [`app`] puts them together with the cross-cutting layers.

pub mod chat;
pub mod errors;
pub mod generate;
pub mod history;
mod relay;
pub mod status;
pub mod status_page;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use llm_api::ErrorBody;
use llm_api::generate::GenerateRequest;
use llm_api::openai::{ChatCompletionRequest, OpenAiError};
use resilience_core::fallback::TierKind;
use tower::ServiceBuilder;

use crate::auth::layer::{AuthState, authenticate};
use crate::layers::body::{BodyReader, read_body};
use crate::layers::validate::{Validate, validate};
use crate::layers::{
    Api, RequestId, access_log, admin_guard, metrics, rate_limit, request_id, shed,
};
use crate::state::Gateway;

/// `x-served-by`.
static X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
/// `x-fallback-tier`.
static X_FALLBACK_TIER: HeaderName = HeaderName::from_static("x-fallback-tier");

/// The whole API, its layers in the order `crate::layers` lists them.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let body = BodyReader {
        uploads: Arc::clone(&gateway.uploads),
        metrics: Arc::clone(&gateway.metrics),
    };
    let limited = gateway.limits.active();
    let needs_identity = gateway.auth.enabled() || limited;
    Router::new()
        .route(
            "/generate",
            model_route::<GenerateRequest>(&gateway, "generate", post(generate::generate)),
        )
        .route(
            "/v1/chat/completions",
            model_route::<ChatCompletionRequest>(
                &gateway,
                "chat_completions",
                post(chat::chat_completions),
            ),
        )
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
        .route("/admin/history", get(history::history))
        .route("/admin/signals", get(status_page::signals))
        .route("/status", get(status_page::page))
        .route("/status/app.js", get(status_page::script))
        .route("/status/app.css", get(status_page::style))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn(request_id::request_id))
                .layer(from_fn(access_log::access_log))
                .layer(http_edge::security::headers())
                .option_layer(gateway.settings.cors.layer())
                .layer(from_fn_with_state(
                    Arc::clone(&gateway.admin_allow),
                    admin_guard::guard_admin,
                ))
                // Neither layer exists when it has nothing to do (AUTH_MODE=none and no
                // anonymous limits, the lab's default): a request pays nothing for them.
                .option_layer(needs_identity.then(|| {
                    from_fn_with_state(
                        AuthState {
                            auth: Arc::clone(&gateway.auth),
                            metrics: Arc::clone(&gateway.metrics),
                        },
                        authenticate,
                    )
                }))
                .option_layer(
                    limited
                        .then(|| from_fn_with_state(Arc::clone(&gateway), rate_limit::rate_limit)),
                )
                .layer(from_fn_with_state(body, read_body)),
        )
        .with_state(gateway)
}

/// A model route: `handler` behind validation into `T`, load shedding and metrics (on the
/// route's own method only: another method still gets 405).
fn model_route<T: Validate>(
    gateway: &Arc<Gateway>,
    endpoint: &'static str,
    handler: MethodRouter<Arc<Gateway>>,
) -> MethodRouter<Arc<Gateway>> {
    handler.route_layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(Arc::clone(gateway), validate::<T>))
            .layer(from_fn_with_state(Arc::clone(gateway), shed::shed_load))
            .layer(from_fn_with_state(
                (Arc::clone(gateway), endpoint),
                metrics::record,
            )),
    )
}

/// `x-served-by` and, from a fallback tier, `x-fallback-tier`.
pub(crate) fn tag(response: &mut Response, served_by: &str, fallback: Option<TierKind>) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(served_by) {
        headers.insert(X_SERVED_BY.clone(), value);
    }
    if let Some(tier) = fallback {
        headers.insert(
            X_FALLBACK_TIER.clone(),
            HeaderValue::from_static(tier.as_str()),
        );
    }
}

async fn not_found(request_id: Option<axum::Extension<RequestId>>, req: Request) -> Response {
    if Api::of(&req) == Api::OpenAi {
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
