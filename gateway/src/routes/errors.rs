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

/// `/generate`'s failure: 422 when an upstream refused the request, else 503 with
/// `Retry-After`. The message is the gateway's own ([`stable_message`]), never the
/// upstream's words.
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
            FallbackError::Rejected(_) => {
                let message = match error.refusal() {
                    Some(r) => {
                        let mut message = stable_message(r.class, r.status);
                        if let Some(code) = &r.code {
                            message.push_str(&format!(" [{code}]"));
                        }
                        message
                    }
                    None => "the request was refused".to_owned(),
                };
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorBody::new("invalid_request", message, None),
                    None,
                )
            }
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

/// `/v1/chat/completions`' failure, in OpenAI's error shape. The message is the gateway's
/// own ([`stable_message`]) with the request id; of the upstream's answer only its status
/// (class), and its `type` and `code` (short identifiers, checked where the answer was
/// read), reach the client — SDKs act on codes such as `context_length_exceeded`.
///
/// - A refusal of the request itself: the upstream's status (400 unless it said another
///   4xx), type (`invalid_request_error` unless it gave one) and code.
/// - When nothing could answer: the last upstream failure's status for a 429 or 5xx, 504
///   for silence, 502 for a broken answer, 503 when nothing could be tried; its type and
///   code when it gave them; `Retry-After`: the upstream's own when it gave one, else the
///   gateway's default.
#[derive(Debug)]
pub struct OpenAiFailure {
    status: StatusCode,
    body: OpenAiError,
    retry_after_s: Option<u64>,
}

impl OpenAiFailure {
    /// The answer to `error` for request `request_id`; `retry_after_s` is the default wait
    /// of an exhausted request.
    pub fn new(error: &FallbackError, request_id: &str, retry_after_s: u64) -> Self {
        match error {
            FallbackError::Rejected(_) => Self::refused(error.refusal(), request_id),
            FallbackError::AllTiersFailed(_) => {
                Self::exhausted(error.last_attempt(), request_id, retry_after_s)
            }
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn refused(refusal: Option<&AttemptFailure>, request_id: &str) -> Self {
        let (status, message, kind, code) = match refusal {
            Some(r) => (
                r.status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .filter(StatusCode::is_client_error)
                    .unwrap_or(StatusCode::BAD_REQUEST),
                stable_message(r.class, r.status),
                r.kind.clone(),
                r.code.clone(),
            ),
            None => (
                StatusCode::BAD_REQUEST,
                "the request was refused".to_owned(),
                None,
                None,
            ),
        };
        Self {
            status,
            body: OpenAiError::new(
                kind.unwrap_or_else(|| "invalid_request_error".to_owned()),
                with_request_id(message, request_id),
                None,
                code,
            ),
            retry_after_s: None,
        }
    }

    fn exhausted(last: Option<&AttemptFailure>, request_id: &str, retry_after_s: u64) -> Self {
        let retry_after_s = last
            .and_then(|r| r.retry_after)
            .map_or(retry_after_s, |asked| asked.as_secs().max(1));
        let (status, message, kind, code) = match last {
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
                let message = format!(
                    "{}; no fallback could answer",
                    stable_message(r.class, r.status)
                );
                (status, message, r.kind.clone(), code)
            }
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no upstream is available and no fallback could answer".to_owned(),
                None,
                "no_upstream_available".to_owned(),
            ),
        };
        let kind = kind.unwrap_or_else(|| {
            if status == StatusCode::TOO_MANY_REQUESTS {
                "rate_limit_error".to_owned()
            } else {
                "upstream_error".to_owned()
            }
        });
        Self {
            status,
            body: OpenAiError::new(kind, with_request_id(message, request_id), None, Some(code)),
            retry_after_s: Some(retry_after_s),
        }
    }
}

/// The gateway's words for a failure of `class`, with the upstream's status class
/// (`HTTP 4xx`) when it answered with one: the same text for every failure of the kind,
/// whatever the upstream said.
pub fn stable_message(class: FailureClass, status: Option<u16>) -> String {
    let words = match class {
        FailureClass::Transport => "the upstream could not be reached",
        FailureClass::Timeout => "the upstream did not answer in time",
        FailureClass::ServerError => "the upstream failed",
        FailureClass::RateLimited => "the upstream is rate limiting requests",
        FailureClass::Misconfigured => "the upstream refused the gateway's call",
        FailureClass::Malformed => "the upstream's answer could not be read",
        FailureClass::ContextTooLong => "the prompt does not fit the model's context",
        FailureClass::ContentRefused => "the upstream refused the content of the request",
        FailureClass::Refused => "the upstream refused the request",
    };
    match status {
        Some(status) if (100..600).contains(&status) => {
            format!("{words} (HTTP {}xx)", status / 100)
        }
        _ => words.to_owned(),
    }
}

/// `message` naming the request, as OpenAI's own errors do (its error object has no field
/// for it; the `x-request-id` header carries it too).
fn with_request_id(message: String, request_id: &str) -> String {
    format!("{message} (request id {request_id})")
}

impl IntoResponse for OpenAiFailure {
    fn into_response(self) -> Response {
        respond(self.status, Json(self.body), self.retry_after_s)
    }
}

/// The metrics label of a request's final failure (`rejected_upstream` or `exhausted`);
/// a refused request is logged with the upstream's (redacted) words, an exhausted one with
/// every tier's cause.
pub fn failure_label(error: &FallbackError, request_id: &str) -> &'static str {
    match error {
        FallbackError::Rejected(refused) => {
            // The upstream's own words (secrets masked when they were read) go to the log
            // only: the client's answer has the gateway's.
            tracing::info!(request_id = %request_id, error = %refused.error,
                "the upstream refused the request");
            "rejected_upstream"
        }
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
/// after it reached the client (no `[DONE]` follows it): the gateway's words, never the
/// upstream's (its error event's text goes to the log).
pub fn interrupted_event(error: &UpstreamError, request_id: &str) -> OpenAiError {
    let message = match error {
        UpstreamError::Timeout(idle) => format!(
            "the upstream stream stalled: no event for {} ms",
            idle.as_millis()
        ),
        _ => "the upstream stream broke before the answer finished".to_owned(),
    };
    OpenAiError::new(
        "upstream_error",
        with_request_id(message, request_id),
        None,
        Some("stream_interrupted".to_owned()),
    )
}

#[cfg(test)]
mod tests;
