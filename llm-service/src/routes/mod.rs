//! The HTTP routes, one module per area; [`app`] puts them together.

pub mod chaos;
pub mod chat;
pub mod generate;
pub mod health;
pub mod simulate;
pub mod stream;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use llm_api::ErrorBody;

use crate::state::AppState;

/// The whole API, every answer with the security headers; every request body is read whole
/// within `body` first.
pub fn app(state: AppState, body: http_edge::BodyLimits) -> Router {
    let uploads = std::sync::Arc::new(http_edge::Uploads::new(body));
    Router::new()
        .route("/generate", post(generate::generate))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(chat::models))
        .route("/health", get(health::health))
        .route("/live", get(health::live))
        .route("/model/health", get(health::model_health))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .merge(chaos::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            uploads,
            http_edge::body::read_whole,
        ))
        .layer(DefaultBodyLimit::max(body.max_bytes))
        .layer(http_edge::security::headers())
        .with_state(state)
}

async fn not_found() -> (StatusCode, axum::Json<ErrorBody>) {
    (
        StatusCode::NOT_FOUND,
        axum::Json(ErrorBody::new("not_found", "no such route", None)),
    )
}
