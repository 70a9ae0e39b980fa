//! Layer 2: the request's trace and the access log.
//!
//! The trace: a valid W3C `traceparent` is continued (a malformed one is ignored and a new
//! trace started), and the request's `request` span opened as a child of its parent
//! ([`crate::telemetry`]); its context goes into the request's extensions as
//! [`RequestTrace`], for the tries upstream and the history.
//!
//! The access log: one `tracing` line per request when its answer starts (target `access`,
//! level INFO), with `request_id` and `trace_id` first, then the method, the route (a
//! model route's name on the model endpoints, the path otherwise), the path (never the
//! query, which may hold secrets), status, latency, and on the model endpoints what the
//! handler recorded ([`Recorded`]): the upstream instance or provider that answered
//! (`served_by`), the tier, the tries beyond the first (`retries`), the tokens, and the
//! prompt as `prompt_sha256` (the first 8 bytes of its SHA-256, in hex) and `prompt_len`
//! (bytes), never its text. Then the caller (an authenticated caller's `sub` or key owner,
//! never the credential; `anonymous` otherwise). With `LOG_FORMAT=json` (the default) it
//! is one JSON object per line.
//!
//! The request runs inside a `tracing` span (method, path, request id) only when DEBUG is
//! on for the gateway: at the default level a span per request cost as much as the line
//! itself, and the lines a request logs carry its request id anyway.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_edge::otel::{self, Kind};
use http_edge::trace::{TRACEPARENT, TraceParent};
use tracing::Instrument;

use super::{Recorded, RequestId};
use crate::auth::layer::CallerName;
use crate::telemetry::RequestTrace;

/// Continues or starts the request's trace, and logs its answer (see the module's rules).
pub async fn access_log(mut req: Request, next: Next) -> Response {
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| TraceParent::parse(value.as_bytes()));
    let mut span = otel::start("request", Kind::Server, incoming);
    let trace = span.context();
    req.extensions_mut().insert(RequestTrace(trace));
    let logged = tracing::enabled!(target: "access", tracing::Level::INFO);
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    if !logged && !debug && !span.is_recording() {
        return next.run(req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let id = req.extensions().get::<RequestId>().cloned();
    let id = id.as_ref().map_or("", |id| id.0.as_str());
    let trace_id = trace.trace_id.hex();
    let response = if debug {
        let debug_span = tracing::debug_span!("request", %method, path = uri.path(),
            request_id = id, trace_id = trace_id.as_str());
        next.run(req).instrument(debug_span).await
    } else {
        next.run(req).await
    };
    let status = response.status().as_u16();
    let recorded = response.extensions().get::<Recorded>();
    let route = match recorded {
        Some(Recorded::Answered { route, .. }) => route.as_str(),
        _ => uri.path(),
    };
    if span.is_recording() {
        span.set("http.request.method", method.as_str().to_owned());
        span.set("url.path", uri.path().to_owned());
        span.set("http.route", route.to_owned());
        span.set("http.response.status_code", i64::from(status));
        span.set("request_id", id.to_owned());
        if let Some(Recorded::Answered { service, tier, .. }) = recorded {
            span.set("served_by", service.clone());
            span.set("tier", tier.as_str());
        }
        if status >= 500 {
            span.error(|| format!("status {status}"));
        }
    }
    span.end();
    if logged {
        log(
            &response, id, &trace_id, &method, &uri, route, status, started, recorded,
        );
    }
    response
}

/// The access-log line.
#[expect(
    clippy::too_many_arguments,
    reason = "the fields of one log line, each read once"
)]
fn log(
    response: &Response,
    request_id: &str,
    trace_id: &http_edge::trace::Hex<32>,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    route: &str,
    status: u16,
    started: Instant,
    recorded: Option<&Recorded>,
) {
    let caller = response
        .extensions()
        .get::<CallerName>()
        .map_or("anonymous", |CallerName(name)| name.as_ref());
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (served_by, tier, retries, tokens, prompt) = match recorded {
        Some(Recorded::Answered {
            service,
            tier,
            tokens,
            tokens_used,
            retries,
            prompt,
            ..
        }) => (
            Some(service.as_str()),
            Some(tier.as_str()),
            Some(*retries),
            tokens.map(|usage| usage.total_tokens).or(*tokens_used),
            Some(prompt),
        ),
        Some(Recorded::Failed {
            retries, prompt, ..
        }) => (None, None, Some(*retries), None, Some(prompt)),
        None => (None, None, None, None, None),
    };
    tracing::info!(
        target: "access",
        request_id,
        trace_id = trace_id.as_str(),
        %method,
        route,
        path = uri.path(),
        status,
        latency_ms,
        served_by,
        tier,
        retries,
        tokens,
        prompt_sha256 = prompt.and_then(|p| p.sha256).as_ref().map(|h| h.as_str()),
        prompt_len = prompt.map(|p| p.len),
        caller,
        "answered"
    );
}
