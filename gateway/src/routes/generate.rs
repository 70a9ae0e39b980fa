//! `POST /generate`: the lab's contract, through the fallback chain.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_edge::{BadInput, JsonBody};
use llm_api::ErrorBody;
use llm_api::envelope::{GenerateData, GenerateSuccess};
use llm_api::generate::GenerateRequest;
use resilience_core::fallback::Served;

use super::errors::{LabFailure, failure_label};
use crate::metrics::Answered;
use crate::middleware::RequestId;
use crate::pool::{Answer, GatewayRequest};
use crate::state::Gateway;
use crate::upstream::Payload;
use crate::wire;

/// Answers a prompt from the first tier that can: a 200 whenever any tier answered, a 4xx
/// for bad input (never sent upstream), a 503 with `Retry-After` when nothing could answer.
pub async fn generate(
    State(gateway): State<Arc<Gateway>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<JsonBody<GenerateRequest>, BadInput>,
) -> Response {
    let started = Instant::now();
    let request = match super::validated(&gateway, body, GenerateRequest::validate) {
        Ok(request) => request,
        Err(bad) => {
            let mut body =
                ErrorBody::new(bad.kind, bad.error.message.clone(), Some(bad.error.field));
            body.request_id = Some(request_id);
            return (bad.status, Json(body)).into_response();
        }
    };
    let req = GatewayRequest::new(
        Payload::Generate(request),
        request_id.clone(),
        gateway.settings.request_timeout,
    );
    let (_route, result) = gateway.routes.serve(&req).await;
    match result {
        Ok(served) => {
            let answer = &served.response;
            let fallback_type = served.fallback_type();
            let fallback_reason = served.fallback_reason();
            log_fallback(&served, &request_id);
            if served.tier.is_live() {
                gateway.share_answer(&req, answer);
            }
            let took = started.elapsed();
            gateway.metrics.answered(Answered {
                service: &answer.served_by,
                model: &answer.model_used,
                status: 200,
                tier: served.tier.as_str(),
                endpoint: "generate",
                took,
            });
            let data = GenerateData {
                fallback_reason: fallback_reason.map(wire::fallback_reason),
                fallback_type: fallback_type.and_then(wire::fallback_type),
                fallback_used: served.fallback_used(),
                model_used: answer.model_used.clone(),
                request_id,
                response: answer.response.clone(),
                response_time_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                served_by: answer.served_by.clone(),
                tokens_used: answer.tokens_used,
            };
            let mut response = Json(GenerateSuccess::new(data)).into_response();
            super::tag(&mut response, &served);
            response
        }
        Err(error) => {
            let failure = LabFailure::new(&error, &request_id, gateway.settings.retry_after_s());
            let label = failure_label(&error, &request_id);
            gateway
                .metrics
                .gateway_error(label, failure.status().as_u16());
            failure.into_response()
        }
    }
}

/// The WARN line of an answer a fallback tier served: `fallback`, the tier, the reason, the
/// request id.
pub fn log_fallback(served: &Served<Answer>, request_id: &str) {
    if served.fallback_used() {
        tracing::warn!(
            request_id = %request_id,
            tier = served.tier.as_str(),
            reason = served.fallback_reason().map(|r| r.as_str()).unwrap_or("none"),
            provider = %served.provider,
            "fallback answer served"
        );
    }
}
