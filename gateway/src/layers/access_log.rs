//! Layer 2: the access log — one `tracing` line per request when its answer starts (target
//! `access`, level INFO): method, path (never the query, which may hold secrets), status,
//! latency, request id and caller (an authenticated caller's `sub` or key owner, never the
//! credential; `anonymous` otherwise).
//!
//! The request runs inside a `request` span (method, path, request id) only when DEBUG is
//! on for the gateway: at the default level a span per request cost as much as the line
//! itself, and the lines a request logs carry its request id anyway.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::RequestId;
use crate::auth::layer::CallerName;

/// Logs the request's answer (see the module's rules).
pub async fn access_log(req: Request, next: Next) -> Response {
    if !tracing::enabled!(target: "access", tracing::Level::INFO)
        && !tracing::enabled!(tracing::Level::DEBUG)
    {
        return next.run(req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let id = req.extensions().get::<RequestId>().cloned();
    let id = id.as_ref().map_or("", |id| id.0.as_str());
    let span = tracing::debug_span!("request", %method, path = uri.path(), request_id = id);
    let response = next.run(req).instrument(span).await;
    let caller = response
        .extensions()
        .get::<CallerName>()
        .map_or("anonymous", |CallerName(name)| name.as_ref());
    tracing::info!(
        target: "access",
        %method,
        path = uri.path(),
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = id,
        caller,
        "answered"
    );
    response
}
