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
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

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
        crate::routes::history::history,
        crate::routes::status_page::signals,
        crate::routes::status_page::page,
        crate::routes::status_page::script,
        crate::routes::status_page::style,
        openapi_json,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "lab", description = "The lab's contract"),
        (name = "openai", description = "The OpenAI-compatible API"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "admin", description = "The operator's routes and the status page"),
    )
)]
pub struct ApiDoc;

/// The credentials `AUTH_MODE` accepts: `bearer` (`Authorization: Bearer`, an API key or a
/// JWT) and `api_key` (`x-api-key`, what some SDKs send). The model and admin operations
/// list both and the empty requirement: with `AUTH_MODE=none` (the lab's default) they need
/// none.
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`gk_…`, see `gateway keys`) or a JWT (HS256 with \
                         `JWT_SECRET_KEY`, RS256/ES256 with `JWT_PUBLIC_KEY_FILE` or \
                         `JWT_JWKS_FILE`; claims `sub`, `iat`, `exp`, `scope`, optional `tier`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key (`gk_…`)",
            ))),
        );
    }
}

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
