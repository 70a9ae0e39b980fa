//! The request path's cross-cutting concerns, one tower layer each, stacked by
//! [`crate::routes::app`] in this order (outermost first):
//!
//! 1. [`request_id`]: the client's sane `x-request-id`, or a new one; on every answer.
//! 2. [`access_log`]: the request's trace (the incoming W3C `traceparent` continued, or a
//!    new trace; the `request` span) and one line per request — request id, trace id,
//!    route, status, latency, who served, tier, retries, tokens, the prompt's hash and
//!    length, caller.
//! 3. security headers ([`http_edge::security::headers`]) on every answer, then CORS
//!    (`CORS_ALLOW_ORIGINS`; no layer at all when off), which answers a preflight itself.
//! 4. [`admin_guard`]: `/admin/*` (and the status page) refuse cross-site browser requests
//!    and addresses outside `ADMIN_ALLOW`, in every `AUTH_MODE`.
//! 5. authentication ([`crate::auth::layer`]): the caller's API key or JWT checked and its
//!    scope against the route's (401 / 403 with `WWW-Authenticate`); the [`crate::auth::Identity`]
//!    in the request's extensions. Public routes (`/live`, `/ready`, `/health`, `/metrics`,
//!    `/openapi.json`) pass untouched.
//! 6. [`rate_limit`]: the caller's allowance on the model routes (429 with `Retry-After`;
//!    `X-RateLimit-*` on every answer), before any byte of the body is read.
//! 7. [`body`]: the whole body read before anything else, within a size limit and a
//!    deadline (413 / 408 in the API's error shape), so that no later layer and no handler
//!    waits on a client.
//!
//! Then on the model routes (`/generate`, `/v1/chat/completions`) only:
//!
//! 8. [`validate`]: the body parsed and validated into the route's request type (4xx naming
//!    the field), then PII masked when `PII_REDACTION=mask`; bad input never takes an
//!    in-flight slot or reaches an upstream.
//! 9. [`shed`]: an in-flight slot, or 503 with `Retry-After` above
//!    `MAX_CONCURRENT_REQUESTS` — health, readiness and metrics keep answering under
//!    overload.
//! 10. [`metrics`]: the answer (or the gateway's own error) recorded with its latency.
//!
//! Errors a layer answers itself take the API's shape: OpenAI's under `/v1/`, the lab's
//! elsewhere ([`Api`]).

pub mod access_log;
pub mod admin_guard;
pub mod body;
pub mod metrics;
pub mod rate_limit;
pub mod request_id;
pub mod shed;
pub mod validate;

#[cfg(test)]
mod tests;

pub use metrics::Recorded;
pub use request_id::{RequestId, X_REQUEST_ID};
pub use shed::Occupancy;
pub use validate::Valid;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_edge::BadInput;
use llm_api::ErrorBody;
use llm_api::openai::OpenAiError;

/// Which API a request is on, for the shape of the errors the gateway answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The lab's (`/generate`, `/health`, `/admin/*`…): the lab's error envelope.
    Lab,
    /// The OpenAI-compatible API (`/v1/…`): OpenAI's error object.
    OpenAi,
}

impl Api {
    /// The API of `req`.
    pub fn of(req: &Request) -> Self {
        if req.uri().path().starts_with("/v1/") {
            Self::OpenAi
        } else {
            Self::Lab
        }
    }

    /// `bad` in this API's shape, with the request id (the lab's envelope carries it).
    pub fn reject(self, bad: BadInput, request_id: Option<&RequestId>) -> Response {
        match self {
            Self::OpenAi => bad.openai(),
            Self::Lab => bad.lab(request_id.map(|id| id.0.clone())),
        }
    }

    /// A refusal the gateway answers itself, with `status`, in this API's shape: OpenAI's
    /// error object (`kind.openai` as its `type`, `kind.code` as its `code`), or the lab's
    /// envelope (`kind.lab` as its `type`, with the request id).
    pub fn refuse(
        self,
        status: StatusCode,
        kind: ErrorKind,
        message: String,
        request_id: Option<&RequestId>,
    ) -> Response {
        match self {
            Self::OpenAi => {
                let body = OpenAiError::new(kind.openai, message, None, Some(kind.code.to_owned()));
                (status, axum::Json(body)).into_response()
            }
            Self::Lab => {
                let mut body = ErrorBody::new(kind.lab, message, None);
                body.request_id = request_id.map(|id| id.0.clone());
                (status, axum::Json(body)).into_response()
            }
        }
    }
}

/// How a refusal is named in each API's shape (see [`Api::refuse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind {
    /// The lab envelope's `error.type`.
    pub lab: &'static str,
    /// OpenAI's `error.type`.
    pub openai: &'static str,
    /// OpenAI's `error.code`.
    pub code: &'static str,
}
