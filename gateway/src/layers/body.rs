//! Layer 6: the whole request body, read before anything else, within a size limit and a
//! deadline for the whole body (not per chunk: a client trickling a byte a second is cut at
//! the deadline). Over the limit: 413; too slow: 408; both in the API's error shape. The
//! layers and the handler after it find the body in memory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use http_edge::BadInput;

use super::{Api, RequestId};
use crate::metrics::Metrics;

/// How much body a request may have, and how long it may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The largest body, in bytes.
    pub max_bytes: usize,
    /// The longest the whole body may take to arrive.
    pub deadline: Duration,
}

/// The body layer's state: its limits, and the metrics that count its refusals (as
/// `validation` errors, with their status).
#[derive(Clone)]
pub struct BodyReader {
    /// The limits.
    pub limits: BodyLimits,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
}

/// Reads the body whole within the limits, or answers 413 / 408.
pub async fn read_body(State(reader): State<BodyReader>, req: Request, next: Next) -> Response {
    let limits = reader.limits;
    let api = Api::of(&req);
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limits.max_bytes).collect();
    let bad = match tokio::time::timeout(limits.deadline, read).await {
        Ok(Ok(collected)) => {
            let req = Request::from_parts(parts, Body::from(collected.to_bytes()));
            return next.run(req).await;
        }
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            BadInput::too_large(limits.max_bytes)
        }
        // The client broke the body off: it is gone, but answer in case it still listens.
        Ok(Err(_)) => BadInput::too_slow(limits.deadline),
        Err(_elapsed) => BadInput::too_slow(limits.deadline),
    };
    reader
        .metrics
        .gateway_error("validation", bad.status.as_u16());
    api.reject(bad, parts.extensions.get::<RequestId>())
}
