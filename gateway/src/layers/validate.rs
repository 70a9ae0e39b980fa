//! Layer 7 (model routes): the body, already in memory, parsed into the route's request type
//! and validated (415 / 400 / 422 naming the field, in the API's shape, counted in the
//! metrics); the handler takes the request as [`Valid<T>`]. Bad input never takes an
//! in-flight slot and never reaches an upstream.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use http_edge::BadInput;
use llm_api::FieldError;
use llm_api::generate::GenerateRequest;
use llm_api::limits::InputLimits;
use llm_api::openai::ChatCompletionRequest;
use serde::de::DeserializeOwned;

use super::{Api, RequestId};
use crate::state::Gateway;

/// A request type a model route accepts.
pub trait Validate: DeserializeOwned + Clone + Send + Sync + 'static {
    /// Checks the request under the gateway's input limits; the error names the field.
    fn check(&self, limits: &InputLimits) -> Result<(), FieldError>;
}

impl Validate for GenerateRequest {
    fn check(&self, limits: &InputLimits) -> Result<(), FieldError> {
        self.validate_within(limits)
    }
}

impl Validate for ChatCompletionRequest {
    fn check(&self, limits: &InputLimits) -> Result<(), FieldError> {
        self.validate_within(limits)
    }
}

/// A request that parsed and passed validation, for the handler.
#[derive(Debug, Clone)]
pub struct Valid<T>(pub T);

/// Parses and validates the body as a `T`, or answers the client's mistake.
pub async fn validate<T: Validate>(
    State(gateway): State<Arc<Gateway>>,
    req: Request,
    next: Next,
) -> Response {
    let api = Api::of(&req);
    let (mut parts, body) = req.into_parts();
    // The body layer read it whole already: this takes no time and cannot fail on size.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let checked = http_edge::read_json::<T>(&parts.headers, &bytes).and_then(|request| {
        request
            .check(&gateway.settings.limits)
            .map(|()| request)
            .map_err(BadInput::invalid)
    });
    match checked {
        Ok(request) => {
            parts.extensions.insert(Valid(request));
            next.run(Request::from_parts(parts, axum::body::Body::empty()))
                .await
        }
        Err(bad) => {
            gateway
                .metrics
                .gateway_error("validation", bad.status.as_u16());
            api.reject(bad, parts.extensions.get::<RequestId>())
        }
    }
}

/// The handler's side: the request the layer validated.
impl<T: Clone + Send + Sync + 'static, S: Send + Sync> FromRequestParts<S> for Valid<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts.extensions.remove::<Valid<T>>().ok_or_else(|| {
            // Only when a route is wired without its validation layer: a bug of ours.
            let bad = BadInput::invalid(FieldError::new("body", "was not validated"));
            Api::Lab.reject(bad, None)
        })
    }
}
