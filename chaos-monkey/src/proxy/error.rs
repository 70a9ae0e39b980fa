//! What the API refuses, and how it says so: `{"error": "...", "status": N}` as Toxiproxy
//! does, with Toxiproxy's messages where it has one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A refused API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// No proxy by that name: 404.
    ProxyNotFound,
    /// A proxy by that name exists: 409.
    ProxyExists,
    /// No toxic by that name on the proxy: 404.
    ToxicNotFound,
    /// A toxic by that name exists on the proxy: 409.
    ToxicExists,
    /// A malformed or invalid body: 400.
    BadRequest(String),
    /// The listen address could not be bound: 500, as in Toxiproxy.
    Listen(String),
    /// No such route: 404.
    NoRoute,
    /// The route exists, not with this method: 405.
    MethodNotAllowed,
}

impl ProxyError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// The HTTP status it maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ProxyNotFound | Self::ToxicNotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::ProxyExists | Self::ToxicExists => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Listen(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ProxyNotFound => f.write_str("proxy not found"),
            Self::ProxyExists => f.write_str("proxy already exists"),
            Self::ToxicNotFound => f.write_str("toxic not found"),
            Self::ToxicExists => f.write_str("toxic already exists"),
            Self::BadRequest(message) => f.write_str(message),
            Self::Listen(message) => f.write_str(message),
            Self::NoRoute => f.write_str("not found"),
            Self::MethodNotAllowed => f.write_str("method not allowed"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        (status, Json(body)).into_response()
    }
}
