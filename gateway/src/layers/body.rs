//! Layer 7: the whole request body, read before anything else by [`http_edge::Uploads`]:
//! within a size limit (a larger `Content-Length` refused before reading, so no
//! `100 Continue`), a deadline for the whole body (not per chunk) and a budget of bodies
//! read at once. Over the limit: 413; too slow: 408; no room: 503 with `Retry-After`; all in
//! the API's error shape and counted. The layers and the handler after it find the body in
//! memory, and a slow upload never holds an in-flight slot.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_edge::Uploads;

use super::{Api, RequestId};
use crate::metrics::Metrics;

/// The body layer's state: the bodies being read, and the metrics that count refusals
/// (`validation` errors for 413 / 408, `overloaded` for 503).
#[derive(Clone)]
pub struct BodyReader {
    /// The limits and the budget.
    pub uploads: Arc<Uploads>,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
}

/// Reads the body whole within the limits, or answers 413 / 408 / 503.
pub async fn read_body(State(reader): State<BodyReader>, req: Request, next: Next) -> Response {
    let api = Api::of(&req);
    let request_id = req.extensions().get::<RequestId>().cloned();
    match reader.uploads.read(req).await {
        Ok(req) => next.run(req).await,
        Err(bad) => {
            let kind = if bad.status.as_u16() == 503 {
                "overloaded"
            } else {
                "validation"
            };
            reader.metrics.gateway_error(kind, bad.status.as_u16());
            api.reject(bad, request_id.as_ref())
        }
    }
}
