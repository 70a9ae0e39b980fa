//! Layer 2: the access log — one `tracing` line per request when its answer starts:
//! method, path (never the query, which may hold secrets), status, latency and request id.
//! Built on tower-http's `TraceLayer`.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnBodyChunk, DefaultOnEos, TraceLayer};
use tracing::Span;

use super::RequestId;

/// The access-log layer.
pub type AccessLogLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> Span,
    fn(&Request, &Span),
    fn(&Response, Duration, &Span),
    DefaultOnBodyChunk,
    DefaultOnEos,
    (),
>;

/// The access-log layer: a span per request, a line per answer.
pub fn layer() -> AccessLogLayer {
    TraceLayer::new_for_http()
        .make_span_with(span as fn(&Request) -> Span)
        .on_request(on_request as fn(&Request, &Span))
        .on_response(on_response as fn(&Response, Duration, &Span))
        // The access line carries the status already; no second line per 5xx.
        .on_failure(())
}

fn span(req: &Request) -> Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .map_or("", |id| id.0.as_str());
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
}

fn on_request(_: &Request, _: &Span) {}

fn on_response(response: &Response, latency: Duration, _: &Span) {
    tracing::info!(
        target: "access",
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "answered"
    );
}
