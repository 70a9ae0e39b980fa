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

/// The whole API.
pub fn app(state: AppState) -> Router {
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
        .layer(DefaultBodyLimit::max(http_edge::BODY_LIMIT))
        .with_state(state)
}

async fn not_found() -> (StatusCode, axum::Json<ErrorBody>) {
    (
        StatusCode::NOT_FOUND,
        axum::Json(ErrorBody::new("not_found", "no such route", None)),
    )
}
