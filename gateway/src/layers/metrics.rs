//! Layer 10 (model routes, innermost): the handler's answer recorded in the metrics with its
//! latency. The handler says what it answered by putting a [`Recorded`] in the response's
//! extensions (who served, which model, which tier; or the label of the gateway's own
//! error); this layer is the one place that turns it into metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use resilience_core::fallback::TierKind;

use crate::metrics::Answered;
use crate::state::Gateway;

/// What a model route's handler answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// An answer from a target or a fallback tier.
    Answered {
        /// Who served it.
        service: String,
        /// The model that answered.
        model: String,
        /// The tier that answered.
        tier: TierKind,
    },
    /// The gateway's own error (`rejected_upstream`, `exhausted`…).
    Failed(&'static str),
}

/// Records the answer of the route named `endpoint` (`generate`, `chat_completions`).
pub async fn record(
    State((gateway, endpoint)): State<(Arc<Gateway>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    match response.extensions().get::<Recorded>() {
        Some(Recorded::Answered {
            service,
            model,
            tier,
        }) => gateway.metrics.answered(Answered {
            service,
            model,
            status,
            tier: tier.as_str(),
            endpoint,
            took: started.elapsed(),
        }),
        Some(Recorded::Failed(label)) => gateway.metrics.gateway_error(label, status),
        None => {}
    }
    response
}
