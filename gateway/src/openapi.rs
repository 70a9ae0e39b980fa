//! `GET /openapi.json`: the gateway's OpenAPI document, derived at compile time from the
//! handlers' `#[utoipa::path]` attributes and the `llm_api` types they read and write, so
//! it cannot drift from them (a test holds every documented operation to the router, and
//! every route of the router to the document).
//!
//! Errors take the API's shape: the lab's envelope ([`llm_api::ErrorBody`]) outside `/v1`,
//! OpenAI's error object ([`llm_api::openai::OpenAiError`]) under it. The few answers built
//! as ad-hoc JSON (`/live`, `/ready`) are described by the schema-only types below.

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// The document: every route of [`crate::routes::app`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gateway",
        description = "The resilient LLM gateway: the lab's `/generate` and an OpenAI-compatible \
            API (server-sent events when `stream` is true) in front of pools of LLM services, \
            with circuit breakers, retries and tiered fallback; health, readiness, metrics and \
            the operator's `/admin` routes."
    ),
    paths(
        crate::routes::generate::generate,
        crate::routes::chat::chat_completions,
        crate::routes::chat::models,
        crate::routes::status::health,
        crate::routes::status::live,
        crate::routes::status::ready,
        crate::routes::status::metrics,
        crate::routes::status::reset_circuit_breaker,
        crate::routes::status::admin_status,
        openapi_json,
    ),
    tags(
        (name = "lab", description = "The lab's contract"),
        (name = "openai", description = "The OpenAI-compatible API"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "admin", description = "The operator's routes"),
    )
)]
pub struct ApiDoc;

/// `GET /live`'s answer: `{"status": "alive"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    /// Always `alive`.
    #[schema(pattern = "^alive$")]
    pub status: String,
}

/// `GET /ready`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` (200); `starting` before the first health round, `draining` after shutdown
    /// began, or `saturated` while every connection or in-flight slot is taken (503).
    #[schema(pattern = "^(ready|starting|draining|saturated)$")]
    pub status: String,
    /// When `saturated`: what is used up.
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// The OpenAPI document of the gateway, as JSON.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests;
