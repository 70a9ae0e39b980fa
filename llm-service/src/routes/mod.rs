//! The HTTP routes, one module per area; [`app`] puts them together.

pub mod chaos;
pub mod chat;
pub mod generate;
pub mod health;
pub mod simulate;
pub mod stream;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use http_edge::otel::{self, Kind};
use http_edge::trace::{TRACEPARENT, TraceParent};
use llm_api::ErrorBody;

use crate::state::AppState;

/// The whole API, every answer with the security headers; every request body is read whole
/// within `body` first. The model routes continue the caller's trace and log one line
/// each ([`access_log`]).
pub fn app(state: AppState, body: http_edge::BodyLimits) -> Router {
    let uploads = std::sync::Arc::new(http_edge::Uploads::new(body));
    let model_routes = Router::new()
        .route("/generate", post(generate::generate))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route_layer(axum::middleware::from_fn(access_log));
    Router::new()
        .merge(model_routes)
        .route("/v1/models", get(chat::models))
        .route("/health", get(health::health))
        .route("/live", get(health::live))
        .route("/model/health", get(health::model_health))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .merge(chaos::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            uploads,
            http_edge::body::read_whole,
        ))
        .layer(DefaultBodyLimit::max(body.max_bytes))
        .layer(http_edge::security::headers())
        .with_state(state)
}

async fn not_found() -> (StatusCode, axum::Json<ErrorBody>) {
    (
        StatusCode::NOT_FOUND,
        axum::Json(ErrorBody::new("not_found", "no such route", None)),
    )
}

/// The model routes' trace and log line: the caller's `traceparent` continued (a malformed
/// one ignored: a new trace), a `request` server span (exported only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set) as the child of the caller's span (the gateway's
/// try), and one line per request (target `access`) with the `x-request-id` received and
/// the trace id, never the prompt.
async fn access_log(req: Request, next: Next) -> Response {
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| TraceParent::parse(value.as_bytes()));
    let mut span = otel::start("request", Kind::Server, incoming);
    let logged = tracing::enabled!(target: "access", tracing::Level::INFO);
    if !logged && !span.is_recording() {
        return next.run(req).await;
    }
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(req).await;
    let status = response.status().as_u16();
    if span.is_recording() {
        span.set("http.request.method", method.as_str().to_owned());
        span.set("url.path", path.clone());
        span.set("http.response.status_code", i64::from(status));
        if let Some(id) = &request_id {
            span.set("request_id", id.clone());
        }
        if status >= 500 {
            span.error(|| format!("status {status}"));
        }
    }
    let trace_id = span.trace_id.hex();
    span.end();
    if logged {
        tracing::info!(
            target: "access",
            request_id = request_id.as_deref().unwrap_or(""),
            trace_id = trace_id.as_str(),
            %method,
            path,
            status,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        );
    }
    response
}
