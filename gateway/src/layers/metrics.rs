//! Layer 10 (model routes, innermost): the handler's answer recorded in the metrics with its
//! latency, and as one `request_log` row of the history. The handler says what it answered
//! by putting a [`Recorded`] in the response's extensions (who served, which model, route
//! and tier, why a fallback, how many tokens; or the label of the gateway's own error); this
//! layer is the one place that turns it into metrics and history.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use history::{Record, RequestRecord};
use llm_api::envelope::FallbackReason;
use llm_api::openai::Usage;
use resilience_core::clock::unix_millis;
use resilience_core::fallback::TierKind;

use super::RequestId;
use crate::metrics::Answered;
use crate::pool::GatewayRequest;
use crate::routing::ModelLabel;
use crate::state::Gateway;
use crate::telemetry::{PromptDigest, RequestTrace};
use crate::wire;

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
        /// The model route that served it.
        route: String,
        /// Why the primary tier did not answer, when a fallback did.
        fallback_reason: Option<FallbackReason>,
        /// The answer's tokens (prompt and completion), when known as it starts (for the
        /// history; cache and template answers included).
        tokens_used: Option<u32>,
        /// The request's model as the metrics name it (a route, or `other`).
        model_label: ModelLabel,
        /// A whole answer's tokens when a live tier answered (a stream counts its own when
        /// it ends).
        tokens: Option<Usage>,
        /// Tries on upstream instances beyond the first (for the access log).
        retries: u32,
        /// The prompt's hash and length (for the access log; never its text).
        prompt: PromptDigest,
    },
    /// The gateway's own error.
    Failed {
        /// Its label (`rejected_upstream`, `exhausted`…).
        label: &'static str,
        /// Tries on upstream instances beyond the first.
        retries: u32,
        /// The prompt's hash and length.
        prompt: PromptDigest,
    },
}

impl Recorded {
    /// The gateway's own error `label` for `req`.
    pub fn failed(label: &'static str, req: &GatewayRequest) -> Self {
        Self::Failed {
            label,
            retries: req.retries(),
            prompt: PromptDigest::of(&req.payload),
        }
    }
}

/// Records the answer of the route named `endpoint` (`generate`, `chat_completions`).
pub async fn record(
    State((gateway, endpoint)): State<(Arc<Gateway>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = gateway
        .history
        .as_ref()
        .and_then(|_| req.extensions().get::<RequestId>().cloned());
    let trace = gateway
        .history
        .as_ref()
        .and_then(|_| req.extensions().get::<RequestTrace>().copied());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let took = started.elapsed();
    let recorded = response.extensions().get::<Recorded>();
    match recorded {
        Some(Recorded::Answered {
            service,
            model,
            tier,
            model_label,
            tokens,
            ..
        }) => gateway.metrics.answered(Answered {
            service,
            model,
            status,
            tier: tier.as_str(),
            endpoint,
            took,
            model_label: model_label.as_str(),
            tokens: *tokens,
        }),
        Some(Recorded::Failed { label, .. }) => gateway.metrics.gateway_error(label, status),
        None => {}
    }
    if let (Some(history), Some(RequestId(request_id)), Some(recorded)) =
        (&gateway.history, request_id, recorded)
    {
        let mut row = request_row(request_id, endpoint, status, took, recorded);
        if let (Record::Request(row), Some(RequestTrace(trace))) = (&mut row, trace) {
            row.trace_id = Some(trace.trace_id.hex().as_str().to_owned());
        }
        history.record(row);
    }
    response
}

/// The `request_log` row of one answer: never the prompt, nor the answer's text.
fn request_row(
    request_id: String,
    endpoint: &'static str,
    status: u16,
    took: Duration,
    recorded: &Recorded,
) -> Record {
    let at_ms = unix_millis(SystemTime::now());
    let mut row = RequestRecord {
        request_id,
        at_ms: i64::try_from(at_ms).unwrap_or(i64::MAX),
        endpoint,
        route: None,
        model: None,
        served_by: None,
        tier: None,
        status_code: status,
        fallback_type: None,
        fallback_reason: None,
        response_time_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
        tokens_used: None,
        trace_id: None,
    };
    if let Recorded::Answered {
        service,
        model,
        tier,
        route,
        fallback_reason,
        tokens_used,
        ..
    } = recorded
    {
        row.route = Some(route.clone());
        row.model = Some(model.clone());
        row.served_by = Some(service.clone());
        row.tier = Some(tier.as_str());
        row.fallback_type = wire::fallback_type(*tier);
        row.fallback_reason = *fallback_reason;
        row.tokens_used = tokens_used.map(i64::from);
    }
    Record::Request(row)
}
