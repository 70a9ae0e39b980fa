//! What happens to a model request before the answer: faults and the simulated model's
//! latency and failures. Shared by `/generate` and `/v1/chat/completions`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm_api::openai::OpenAiError;

use crate::faults::{ErrorFault, RequestFaults};
use crate::state::AppState;
use http_edge::ConnectionControl;

/// Plays the request-level faults and the model's latency and failure draw. Returns the
/// response to send instead of an answer, if any; never returns for `hang` and `reset`.
pub async fn before_answer(
    state: &AppState,
    faults: &RequestFaults,
    control: Option<&ConnectionControl>,
) -> Option<Response> {
    if faults.reset {
        match control {
            Some(control) => {
                tracing::warn!("fault: resetting the connection");
                control.reset();
                std::future::pending::<()>().await;
            }
            None => tracing::warn!("fault: reset asked, but the connection is not resettable"),
        }
    }
    if faults.hang {
        tracing::warn!("fault: hanging the request");
        std::future::pending::<()>().await;
    }
    let delay = state
        .sim
        .latency()
        .saturating_add(faults.latency.unwrap_or(Duration::ZERO));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(error) = &faults.error {
        return Some(error_response(error));
    }
    if state.sim.fails() {
        return Some(error_response(&ErrorFault {
            status: 500,
            code: Some("simulated_failure".to_owned()),
            message: Some("Simulated LLM failure".to_owned()),
            retry_after_s: None,
        }));
    }
    if faults.malformed {
        let mut response = (StatusCode::OK, "{\"response\": \"trunc").into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Some(response);
    }
    None
}

/// An OpenAI-style error answer for an injected or simulated failure.
pub fn error_response(error: &ErrorFault) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let message = error
        .message
        .clone()
        .unwrap_or_else(|| format!("Simulated upstream error ({status})"));
    let body = OpenAiError::new(kind, message, None, error.code.clone());
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = error.retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
