//! Layer 9 (model routes): an in-flight slot for the request, or — above
//! `MAX_CONCURRENT_REQUESTS` in flight — 503 at once with `Retry-After`, instead of a queue.
//! A stream keeps its slot until it ends ([`Occupancy`]), not only until its headers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{Api, ErrorKind, RequestId};
use crate::state::Gateway;

/// Admits the request with a slot, or sheds it.
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
        let kind = ErrorKind {
            lab: "overloaded",
            openai: "overloaded",
            code: "overloaded",
        };
        let request_id = req.extensions().get::<RequestId>();
        let mut response =
            Api::of(&req).refuse(StatusCode::SERVICE_UNAVAILABLE, kind, message, request_id);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    slot.admitted = true;
    gateway.metrics.in_flight.inc();
    next.run(req).await
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
