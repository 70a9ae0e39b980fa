//! Layer 1: the request id — the client's `x-request-id` when it is sane (1 to 128 visible
//! ASCII characters), else a new UUIDv7; handed to the handlers as [`RequestId`] and
//! returned on the answer.

use std::time::SystemTime;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use resilience_core::clock::unix_millis;

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client request id kept.
const MAX_LEN: usize = 128;

/// The request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Reads or makes the request id, hands it to the handlers, returns it on the answer.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_owned)
        .unwrap_or_else(new_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// A new UUIDv7 from the thread's random generator: no system call per id (`Uuid::now_v7`
/// asks the kernel for its random bits every time).
fn new_id() -> String {
    uuid::Builder::from_unix_timestamp_millis(unix_millis(SystemTime::now()), &rand::random())
        .into_uuid()
        .to_string()
}

/// Whether a client's id may be used as it is.
fn sane(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}
