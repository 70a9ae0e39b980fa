//! Layer 8 (model routes): the body, already in memory, parsed into the route's request type
//! and validated (415 / 400 / 422 naming the field, in the API's shape, counted in the
//! metrics); the handler takes the request as [`Valid<T>`]. Bad input never takes an
//! in-flight slot and never reaches an upstream. With `PII_REDACTION=mask`, the valid
//! request's prompt text is masked here ([`crate::pii`]), before anything reads it.

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
use crate::pii::{self, PiiMode, Redactor};
use crate::state::Gateway;

/// A request type a model route accepts.
pub trait Validate: DeserializeOwned + Clone + Send + Sync + 'static {
    /// Checks the request under the gateway's input limits; the error names the field.
    fn check(&self, limits: &InputLimits) -> Result<(), FieldError>;

    /// Masks the personal data of its prompt text with `redactor`.
    fn mask(&mut self, redactor: &Redactor);
}

impl Validate for GenerateRequest {
    fn check(&self, limits: &InputLimits) -> Result<(), FieldError> {
        self.validate_within(limits)
    }

    fn mask(&mut self, redactor: &Redactor) {
        pii::mask_generate(redactor, self);
    }
}

impl Validate for ChatCompletionRequest {
    fn check(&self, limits: &InputLimits) -> Result<(), FieldError> {
        self.validate_within(limits)
    }

    fn mask(&mut self, redactor: &Redactor) {
        pii::mask_chat(redactor, self);
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
        Ok(mut request) => {
            if let Some(redactor) = redactor(&gateway) {
                request.mask(redactor);
            }
            parts.extensions.insert(Valid(request));
            next.run(Request::from_parts(parts, axum::body::Body::empty()))
                .await
        }
        Err(bad) => {
            gateway
                .metrics
                .gateway_error("validation", bad.status.as_u16());
            api.reject(
                without_quoted_input(bad),
                parts.extensions.get::<RequestId>(),
            )
        }
    }
}

/// `bad` without the string value serde quotes (`invalid type: string "…", expected a
/// sequence` → `invalid type: string, expected a sequence`): that value may be prompt text
/// sent in the wrong place, and an error message is no place to repeat it.
fn without_quoted_input(mut bad: BadInput) -> BadInput {
    let message = &bad.error.message;
    let quoted = (message.find("string \""), message.rfind("\", expected"));
    if let (Some(start), Some(end)) = quoted
        && start + "string ".len() < end
    {
        bad.error.message = format!("{}string{}", &message[..start], &message[end + 1..]);
    }
    bad
}

/// The redactor prompts are masked with: `Some` when `PII_REDACTION=mask`.
fn redactor(gateway: &Gateway) -> Option<&Redactor> {
    (gateway.settings.pii == PiiMode::Mask).then_some(&gateway.redactor)
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

#[cfg(test)]
mod tests {
    use llm_api::openai::ChatCompletionRequest;

    use super::*;

    fn message_of(body: &str) -> String {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let bad =
            http_edge::read_json::<ChatCompletionRequest>(&headers, body.as_bytes()).unwrap_err();
        without_quoted_input(bad).error.message
    }

    #[test]
    fn a_string_in_the_wrong_place_is_not_quoted_back() {
        let message = message_of(r#"{"model": "m", "messages": "mail alice@example.com \"x\""}"#);
        assert_eq!(message, "invalid type: string, expected a sequence");
        let message = message_of(r#"{"model": "m", "messages": [], "max_tokens": "secret"}"#);
        assert!(!message.contains("secret"), "{message}");
        assert!(
            message.starts_with("invalid type: string, expected"),
            "{message}"
        );
    }

    #[test]
    fn other_messages_stay() {
        let message = message_of(r#"{"model": "m", "messages": [], "max_tokens": -1}"#);
        assert!(message.contains("-1"), "{message}");
        assert_eq!(message_of(r#"{"model": "m"}"#), "missing field `messages`");
    }
}
