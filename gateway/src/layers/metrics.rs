//! Layer 10 (model routes, innermost): the handler's answer recorded in the metrics with its
//! latency. The handler says what it answered by putting a [`Recorded`] in the response's
//! extensions (who served, which model, which tier; or the label of the gateway's own
//! error); this layer is the one place that turns it into metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use llm_api::openai::Usage;
use resilience_core::fallback::TierKind;

use crate::metrics::Answered;
use crate::routing::ModelLabel;
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
        /// The request's model as the metrics name it (a route, or `other`).
        model_label: ModelLabel,
        /// A whole answer's tokens when a live tier answered (a stream counts its own when
        /// it ends).
        tokens: Option<Usage>,
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
            model_label,
            tokens,
        }) => gateway.metrics.answered(Answered {
            service,
            model,
            status,
            tier: tier.as_str(),
            endpoint,
            took: started.elapsed(),
            model_label: model_label.as_str(),
            tokens: *tokens,
        }),
        Some(Recorded::Failed(label)) => gateway.metrics.gateway_error(label, status),
        None => {}
    }
    response
}
