//! The one place a request's final failure becomes an answer, in the shape of the API it
//! came through: the lab's error envelope for `/generate` ([`LabFailure`]), OpenAI's error
//! object for `/v1/*` ([`OpenAiFailure`]), and the in-band error event that ends a stream
//! which broke after it reached the client ([`interrupted_event`]). Each reads the typed
//! failure the fallback chain returned; nothing here decides whether to retry.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm_api::error::ErrorBody;
use llm_api::openai::OpenAiError;
use resilience_core::fallback::FallbackError;
use resilience_core::policy::{AttemptFailure, FailureClass};

use crate::upstream::UpstreamError;

/// `/generate`'s failure: 422 with the refusal when an upstream refused the request, else
/// 503 with `Retry-After`.
#[derive(Debug)]
pub struct LabFailure {
    status: StatusCode,
    body: ErrorBody,
    retry_after_s: Option<u64>,
}

impl LabFailure {
    /// The answer to `error` for request `request_id`; `retry_after_s` when nothing answered.
    pub fn new(error: &FallbackError, request_id: &str, retry_after_s: u64) -> Self {
        let (status, mut body, retry_after_s) = match error {
            FallbackError::Rejected(failure) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody::new("invalid_request", failure.error.to_string(), None),
                None,
            ),
            FallbackError::AllTiersFailed(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new(
                    "service_unavailable",
                    "no tier could answer; try again shortly",
                    None,
                ),
                Some(retry_after_s),
            ),
        };
        body.request_id = Some(request_id.to_owned());
        Self {
            status,
            body,
            retry_after_s,
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for LabFailure {
    fn into_response(self) -> Response {
        respond(self.status, Json(self.body), self.retry_after_s)
    }
}

/// `/v1/chat/completions`' failure, in OpenAI's error shape.
///
/// - A refusal of the request itself is passed through: the upstream's status (400 unless
///   it said another 4xx), message and code.
/// - When nothing could answer, the last upstream failure surfaces as it was — its status
///   for a 429 or 5xx, 504 for silence, 502 for a broken answer, 503 when nothing could be
///   tried — with its message and code, and `Retry-After`: the upstream's own when it gave
///   one, else the gateway's default.
#[derive(Debug)]
pub struct OpenAiFailure {
    status: StatusCode,
    body: OpenAiError,
    retry_after_s: Option<u64>,
}

impl OpenAiFailure {
    /// The answer to `error`; `retry_after_s` is the default wait of an exhausted request.
    pub fn new(error: &FallbackError, retry_after_s: u64) -> Self {
        match error {
            FallbackError::Rejected(failure) => {
                Self::refused(error.refusal(), &failure.error.to_string())
            }
            FallbackError::AllTiersFailed(_) => {
                Self::exhausted(error.last_attempt(), retry_after_s)
            }
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn refused(refusal: Option<&AttemptFailure>, fallback_message: &str) -> Self {
        let (status, message, code) = match refusal {
            Some(r) => (
                r.status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .filter(StatusCode::is_client_error)
                    .unwrap_or(StatusCode::BAD_REQUEST),
                r.message.clone(),
                r.code.clone(),
            ),
            None => (StatusCode::BAD_REQUEST, fallback_message.to_owned(), None),
        };
        Self {
            status,
            body: OpenAiError::new("invalid_request_error", message, None, code),
            retry_after_s: None,
        }
    }

    fn exhausted(last: Option<&AttemptFailure>, retry_after_s: u64) -> Self {
        let retry_after_s = last
            .and_then(|r| r.retry_after)
            .map_or(retry_after_s, |asked| asked.as_secs().max(1));
        let (status, message, code) = match last {
            Some(r) => {
                let status = match (r.status, r.class) {
                    (Some(s), _) if s == 429 || s >= 500 => {
                        StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY)
                    }
                    (_, FailureClass::Timeout) => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let code = r
                    .code
                    .clone()
                    .unwrap_or_else(|| "upstream_error".to_owned());
                (status, format!("{}: {}", r.target, r.message), code)
            }
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no upstream is available and no fallback could answer".to_owned(),
                "no_upstream_available".to_owned(),
            ),
        };
        let kind = if status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limit_error"
        } else {
            "upstream_error"
        };
        Self {
            status,
            body: OpenAiError::new(kind, message, None, Some(code)),
            retry_after_s: Some(retry_after_s),
        }
    }
}

impl IntoResponse for OpenAiFailure {
    fn into_response(self) -> Response {
        respond(self.status, Json(self.body), self.retry_after_s)
    }
}

/// The metrics label of a request's final failure (`rejected_upstream` or `exhausted`);
/// an exhausted request is logged with every tier's cause.
pub fn failure_label(error: &FallbackError, request_id: &str) -> &'static str {
    match error {
        FallbackError::Rejected(_) => "rejected_upstream",
        FallbackError::AllTiersFailed(failed) => {
            tracing::error!(request_id = %request_id, error = %failed, "no tier could answer");
            "exhausted"
        }
    }
}

/// `body` with `status`, and `Retry-After` when given.
fn respond(status: StatusCode, body: impl IntoResponse, retry_after_s: Option<u64>) -> Response {
    let mut response = (status, body).into_response();
    if let Some(seconds) = retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The body of the error event that ends a stream which broke, ended truncated or stalled
/// after it reached the client (no `[DONE]` follows it).
pub fn interrupted_event(error: &UpstreamError) -> OpenAiError {
    let message = match error {
        UpstreamError::Timeout(idle) => format!(
            "the upstream stream stalled: no event for {} ms",
            idle.as_millis()
        ),
        other => format!("the upstream stream broke: {other}"),
    };
    OpenAiError::new(
        "upstream_error",
        message,
        None,
        Some("stream_interrupted".to_owned()),
    )
}

#[cfg(test)]
mod tests;
