//! `POST /generate`: the lab's contract, through the fallback chain.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llm_api::envelope::{GenerateData, GenerateSuccess};
use llm_api::generate::GenerateRequest;
use llm_api::openai::Usage;
use resilience_core::fallback::{AllTiersFailed, FallbackError, Served};

use super::errors::{LabFailure, failure_label};
use crate::answer::Answer;
use crate::layers::rate_limit::TokenCharge;
use crate::layers::{Recorded, RequestId, Valid};
use crate::pool::GatewayRequest;
use crate::state::Gateway;
use crate::telemetry::{PromptDigest, RequestTrace};
use crate::upstream::Payload;
use crate::wire;

/// Answers a prompt from the first tier that can: a 200 whenever any tier answered, 422
/// when an upstream refused the request itself, a 503 with `Retry-After` when nothing could
/// answer. Bad input never gets here (the validation layer answers it).
#[utoipa::path(
    post,
    path = "/generate",
    tag = "lab",
    request_body(content = GenerateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer, from the first tier that could", body = GenerateSuccess,
            headers(("x-served-by" = String, description = "The instance or fallback provider that answered"))),
        (status = 400, description = "The body is not JSON", body = llm_api::ErrorBody),
        (status = 408, description = "The body did not arrive within the deadline", body = llm_api::ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = llm_api::ErrorBody),
        (status = 415, description = "The content type is not `application/json`", body = llm_api::ErrorBody),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::ErrorBody,
            headers(("www-authenticate" = String, description = "`Bearer realm=\"gateway\"`, with `error=\"invalid_token\"` for a bad one"))),
        (status = 403, description = "The credentials lack the `llm:generate` scope", body = llm_api::ErrorBody,
            headers(("www-authenticate" = String, description = "`Bearer error=\"insufficient_scope\"`"))),
        (status = 422, description = "A field is missing, of the wrong type or out of bounds (`error.field` names it), or an upstream refused the request", body = llm_api::ErrorBody),
        (status = 429, description = "The caller's rate limit is spent (`rate_limited`), or its store is unreachable under `fail_closed` (`rate_limiter_unavailable`)", body = llm_api::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"),
                ("x-ratelimit-limit" = u32, description = "Requests a minute of the caller's tier"),
                ("x-ratelimit-remaining" = u32, description = "Requests left now"),
                ("x-ratelimit-reset" = u64, description = "Seconds until the allowance is whole again"))),
        (status = 503, description = "Overloaded, or no tier could answer", body = llm_api::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn generate(
    State(gateway): State<Arc<Gateway>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    trace: Option<Extension<RequestTrace>>,
    Valid(request): Valid<GenerateRequest>,
    charge: Option<Extension<TokenCharge>>,
) -> Response {
    let started = Instant::now();
    let mut req = GatewayRequest::new(
        Payload::Generate(request),
        request_id.clone(),
        gateway.settings.request_timeout,
    );
    if let Some(Extension(RequestTrace(trace))) = trace {
        req = req.in_trace(trace);
    }
    let (route, result) = gateway.routes.serve(&req).await;
    match result {
        Ok(served) => {
            log_fallback(&served, &request_id);
            let model_label = gateway.routes.model_label(&route, req.payload.model());
            let (tier, fallback_type) = (served.tier, served.fallback_type());
            let (fallback_used, fallback_reason) =
                (served.fallback_used(), served.fallback_reason());
            let answer = match served.response {
                Answer::Whole(answer) => answer,
                Answer::Stream(live) => {
                    // `/generate` never asks for a stream, so no target answers with one.
                    tracing::error!(request_id = %request_id, upstream = %live.served_by,
                        "a stream answered /generate; dropped");
                    let error = FallbackError::AllTiersFailed(AllTiersFailed::default());
                    let mut response =
                        LabFailure::new(&error, &request_id, gateway.settings.retry_after_s())
                            .into_response();
                    response
                        .extensions_mut()
                        .insert(Recorded::failed("exhausted", &req));
                    return response;
                }
            };
            // Prompt and answer, as the OpenAI route counts them: the prompt's words are
            // counted once, and only when the charge or the metrics need them.
            let estimate = OnceCell::new();
            let estimated = || {
                *estimate.get_or_init(|| {
                    Usage::new(super::chat::prompt_tokens(&req), answer.tokens_used)
                })
            };
            if let Some(Extension(charge)) = charge {
                charge.charge(estimated().total_tokens);
            }
            // Tokens of live answers only: a cache or template answer processed none.
            let tokens = tier
                .is_live()
                .then(|| answer.usage.unwrap_or_else(estimated));
            let took = started.elapsed();
            let recorded = Recorded::Answered {
                service: answer.served_by.clone(),
                model: answer.model_used.clone(),
                tier,
                route: route.name.clone(),
                fallback_reason: fallback_reason.map(wire::fallback_reason),
                tokens_used: Some(answer.tokens_used),
                model_label,
                tokens,
                retries: req.retries(),
                prompt: PromptDigest::of(&req.payload),
            };
            let mut response = Json(GenerateSuccess::new(GenerateData {
                fallback_reason: fallback_reason.map(wire::fallback_reason),
                fallback_type: fallback_type.and_then(wire::fallback_type),
                fallback_used,
                model_used: answer.model_used,
                request_id,
                response: answer.response,
                response_time_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                served_by: answer.served_by.clone(),
                tokens_used: answer.tokens_used,
            }))
            .into_response();
            super::tag(&mut response, &answer.served_by, fallback_type);
            response.extensions_mut().insert(recorded);
            response
        }
        Err(error) => {
            let failure = LabFailure::new(&error, &request_id, gateway.settings.retry_after_s());
            let label = failure_label(&error, &request_id);
            let mut response = failure.into_response();
            response
                .extensions_mut()
                .insert(Recorded::failed(label, &req));
            response
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
