//! `POST /generate`: the lab's contract, through the fallback chain.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_edge::{BadInput, JsonBody};
use llm_api::ErrorBody;
use llm_api::generate::GenerateRequest;
use resilience_core::fallback::FallbackError;
use serde_json::json;

use crate::middleware::RequestId;
use crate::pool::GatewayRequest;
use crate::state::Gateway;

/// Answers a prompt from the first tier that can: a 200 whenever any tier answered, a 4xx
/// for bad input (never sent upstream), a 503 with `Retry-After` when nothing could answer.
pub async fn generate(
    State(gateway): State<Arc<Gateway>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<JsonBody<GenerateRequest>, BadInput>,
) -> Response {
    let started = Instant::now();
    let request = match body.and_then(|JsonBody(r)| {
        r.validate(gateway.config.file_max_tokens())
            .map(|()| r)
            .map_err(BadInput::invalid)
    }) {
        Ok(request) => request,
        Err(bad) => {
            gateway
                .metrics
                .gateway_error("validation", bad.status.as_u16());
            let mut body =
                ErrorBody::new(bad.kind, bad.error.message.clone(), Some(bad.error.field));
            body.request_id = Some(request_id);
            return (bad.status, Json(body)).into_response();
        }
    };
    let req = GatewayRequest {
        generate: request,
        request_id: request_id.clone(),
        deadline: tokio::time::Instant::now() + gateway.config.request_timeout(),
    };
    match gateway.chain.execute(&req).await {
        Ok(served) => {
            let answer = &served.response;
            let fallback_type = served.fallback_type();
            let fallback_reason = served.fallback_reason();
            if served.fallback_used() {
                tracing::warn!(
                    request_id = %request_id,
                    tier = served.tier.as_str(),
                    reason = fallback_reason.map(|r| r.as_str()).unwrap_or("none"),
                    provider = %served.provider,
                    "fallback answer served"
                );
            }
            if served.tier.is_live()
                && let (Some(redis_cache), Some(key)) =
                    (&gateway.redis_cache, crate::redis_cache::cache_key(&req))
            {
                redis_cache.store_in_background(key, answer.clone());
            }
            let took = started.elapsed();
            gateway.metrics.answered(
                &answer.served_by,
                &answer.model_used,
                200,
                served.tier.as_str(),
                took,
            );
            Json(json!({
                "status": "success",
                "data": {
                    "response": answer.response,
                    "model_used": answer.model_used,
                    "tokens_used": answer.tokens_used,
                    "response_time_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    "served_by": answer.served_by,
                    "fallback_used": served.fallback_used(),
                    "fallback_type": fallback_type.map(|t| t.as_str()),
                    "fallback_reason": fallback_reason.map(|r| r.as_str()),
                    "request_id": request_id,
                }
            }))
            .into_response()
        }
        Err(FallbackError::Rejected(failure)) => {
            gateway.metrics.gateway_error("rejected_upstream", 422);
            let mut body = ErrorBody::new("invalid_request", failure.error.to_string(), None);
            body.request_id = Some(request_id);
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
        Err(FallbackError::AllTiersFailed(failed)) => {
            gateway.metrics.gateway_error("exhausted", 503);
            tracing::error!(request_id = %request_id, error = %failed, "no tier could answer");
            let mut body = ErrorBody::new(
                "service_unavailable",
                "no tier could answer; try again shortly",
                None,
            );
            body.request_id = Some(request_id);
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(gateway.config.args.circuit_breaker_recovery_timeout),
            );
            response
        }
    }
}
