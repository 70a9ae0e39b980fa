//! `GET /openapi.json`: the service's OpenAPI document, derived at compile time from the
//! handlers' `#[utoipa::path]` attributes and the `llm_api` types they read and write, so
//! it cannot drift from them (a test holds every documented operation to the router, and
//! every route of the router to the document).
//!
//! The few answers built as ad-hoc JSON (`/live`, `/model/health`, the chaos API's small
//! answers) are described by the schema-only types below.

use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document: every route of [`crate::routes::app`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "llm-service",
        description = "A simulated LLM backend: the lab's `/generate`, OpenAI-compatible chat \
            completions (server-sent events when `stream` is true), health, metrics, and the \
            `/chaos` fault-injection API."
    ),
    paths(
        crate::routes::generate::generate,
        crate::routes::chat::chat_completions,
        crate::routes::chat::models,
        crate::routes::health::health,
        crate::routes::health::live,
        crate::routes::health::model_health,
        crate::routes::health::metrics,
        crate::routes::chaos::inject_failure,
        crate::routes::chaos::add_fault,
        crate::routes::chaos::list_faults,
        crate::routes::chaos::clear_faults,
        crate::routes::chaos::remove_fault,
        openapi_json,
    ),
    modifiers(&ChaosToken),
    tags(
        (name = "lab", description = "The lab's contract"),
        (name = "openai", description = "The OpenAI-compatible API"),
        (name = "operations", description = "Health, metrics and this document"),
        (name = "chaos", description = "Fault injection: refused unless enabled, and with \
            `CHAOS_TOKEN` set only with `Authorization: Bearer <token>`"),
    )
)]
pub struct ApiDoc;

/// Declares `chaos_token`, the bearer token (`CHAOS_TOKEN`) the `/chaos` routes ask for.
#[derive(Debug)]
pub struct ChaosToken;

impl Modify for ChaosToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`CHAOS_TOKEN`; the chaos API refuses without it when it is set",
                ))
                .build(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("chaos_token", scheme);
    }
}

/// `GET /live`'s answer: `{"status": "alive"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    /// Always `alive`.
    #[schema(pattern = "^alive$")]
    pub status: String,
}

/// `GET /model/health`'s answer: the model's recent latency against the SLA.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelHealth {
    /// `healthy`, `degraded` or `unhealthy` (the `unhealthy` fault, or far over the SLA).
    pub status: llm_api::gateway::HealthStatus,
    /// The model this instance plays.
    pub model: String,
    /// The instance's `SERVICE_ID`.
    pub service_id: String,
    /// `RESPONSE_TIME_SLA`, in milliseconds.
    pub sla_ms: u64,
    /// The recent average answer time, in milliseconds; null before any answer.
    pub recent_average_ms: Option<u64>,
    /// Why, when not healthy.
    pub message: Option<String>,
}

/// `GET /chaos/inject-failure`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InjectedFailure {
    /// For a person.
    pub message: String,
    /// The instance's `SERVICE_ID`.
    pub service_id: String,
    /// The fault's id (for `DELETE /chaos/faults/{id}`).
    pub fault_id: String,
    /// How long the fault lasts, in seconds.
    pub duration_s: f64,
}

/// `DELETE /chaos/faults[/{id}]`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// How many faults were removed.
    pub removed: u64,
}

/// The OpenAPI document of this service, as JSON.
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
