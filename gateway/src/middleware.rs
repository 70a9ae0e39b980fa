//! Cross-cutting layers: request ids and load shedding.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llm_api::ErrorBody;
use llm_api::openai::OpenAiError;

use crate::state::Gateway;

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the client's `x-request-id` when it is sane, else a new UUIDv7.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Reads or makes the request id, hands it to the handlers, returns it on the answer.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// Above `MAX_CONCURRENT_REQUESTS` in flight, answers 503 at once (with `Retry-After`)
/// instead of queueing.
pub async fn shed_load(State(gateway): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let max = gateway.settings.max_concurrent_requests;
    let now = gateway.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    let mut slot = Slot {
        gateway: &gateway,
        admitted: false,
    };
    if now > max {
        gateway.metrics.gateway_error("overloaded", 503);
        let message = format!("more than {max} requests in flight; try again shortly");
        let mut response = if is_openai(&req) {
            let body = OpenAiError::new("overloaded", message, None, Some("overloaded".into()));
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        } else {
            let mut body = ErrorBody::new("overloaded", message, None);
            body.request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        };
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    slot.admitted = true;
    gateway.metrics.in_flight.inc();
    next.run(req).await
}

/// Whether `req` is on the OpenAI-compatible API (`/v1/…`), whose errors take OpenAI's shape.
pub fn is_openai(req: &Request) -> bool {
    req.uri().path().starts_with("/v1/")
}

/// An in-flight slot held past the handler (a stream being relayed); given back on drop.
pub struct Occupancy {
    gateway: Arc<Gateway>,
}

impl Occupancy {
    /// Counts one more request in flight (for load shedding and the gauge) until dropped.
    pub fn enter(gateway: &Arc<Gateway>) -> Self {
        gateway.in_flight.fetch_add(1, Ordering::AcqRel);
        gateway.metrics.in_flight.inc();
        Self {
            gateway: Arc::clone(gateway),
        }
    }
}

impl Drop for Occupancy {
    fn drop(&mut self) {
        self.gateway.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.gateway.metrics.in_flight.dec();
    }
}

/// Gives the in-flight slot back, also when the client goes away mid-request.
struct Slot<'a> {
    gateway: &'a Gateway,
    admitted: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.gateway.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.admitted {
            self.gateway.metrics.in_flight.dec();
        }
    }
}
