//! `POST /v1/chat/completions` (whole answers and server-sent events) and `GET /v1/models`,
//! OpenAI-compatible, through the model's route.
//!
//! Stream safety, in the order a stream lives:
//! 1. Until the first token nothing is sent to the client: the pools fail over on an error
//!    status, a reset, a stream that ends early, or no token within the first-token limit.
//! 2. Then events are relayed as the upstream wrote them; a malformed one is skipped
//!    (counted, logged) and the stream goes on.
//! 3. `[DONE]` ends it; a body that ends without `[DONE]` after a finished choice is
//!    finalised at once. Usage is always the last chunk before `[DONE]` (the upstream's, or
//!    the gateway's estimate).
//! 4. A stream that breaks, ends before its answer finished, or stays silent longer than
//!    the idle limit ends with an error event and no `[DONE]`: a truncated answer never
//!    looks complete.
//!
//! A stream answered by a fallback tier (cache, template) is the whole answer as a short
//! stream. Answers carry `x-served-by` and, from a fallback, `x-fallback-tier`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llm_api::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, DONE,
    Delta, Model, ModelList, Usage, completion_id, unix_seconds,
};
use serde_json::Map;

use super::errors::{OpenAiFailure, failure_label};
use super::generate::log_fallback;
use super::{relay, tag};
use crate::answer::{Answer, WholeAnswer};
use crate::layers::rate_limit::TokenCharge;
use crate::layers::{Recorded, RequestId, Valid};
use crate::pool::GatewayRequest;
use crate::state::Gateway;
use crate::telemetry::{PromptDigest, RequestTrace};
use crate::upstream::{Payload, count_words};
use crate::wire;

/// Answers a chat completion from the model's route (see the module's rules).
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    request_body(content = ChatCompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events: \
            `chat.completion.chunk` objects, then `data: [DONE]` (or an error event when the \
            stream broke)",
            content(
                (ChatCompletion = "application/json"),
                (llm_api::sse::ServerSentEvent = "text/event-stream"),
            )),
        (status = 400, description = "The body is not JSON, or an upstream refused the request", body = llm_api::openai::OpenAiError),
        (status = 408, description = "The body did not arrive within the deadline", body = llm_api::openai::OpenAiError),
        (status = 413, description = "The body is larger than the limit", body = llm_api::openai::OpenAiError),
        (status = 415, description = "The content type is not `application/json`", body = llm_api::openai::OpenAiError),
        (status = 422, description = "A field is missing, of the wrong type or out of bounds; `error.param` names it", body = llm_api::openai::OpenAiError),
        (status = "4XX", description = "An upstream refused the request (its status, message and code)", body = llm_api::openai::OpenAiError),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`): code `invalid_api_key`", body = llm_api::openai::OpenAiError,
            headers(("www-authenticate" = String, description = "`Bearer realm=\"gateway\"`, with `error=\"invalid_token\"` for a bad one"))),
        (status = 403, description = "The credentials lack the `llm:generate` scope: code `insufficient_permissions`", body = llm_api::openai::OpenAiError,
            headers(("www-authenticate" = String, description = "`Bearer error=\"insufficient_scope\"`"))),
        (status = 429, description = "The caller's rate limit is spent (`rate_limit_exceeded`; `rate_limiter_unavailable` under `fail_closed`), or the upstreams asked for quiet", body = llm_api::openai::OpenAiError,
            headers(("retry-after" = u64, description = "Seconds to wait"),
                ("x-ratelimit-limit" = u32, description = "Requests a minute of the caller's tier (when limited)"),
                ("x-ratelimit-remaining" = u32, description = "Requests left now"),
                ("x-ratelimit-reset" = u64, description = "Seconds until the allowance is whole again"))),
        (status = 502, description = "The upstreams answered with something broken", body = llm_api::openai::OpenAiError),
        (status = 503, description = "Overloaded, or no upstream was available", body = llm_api::openai::OpenAiError,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 504, description = "The upstreams did not answer in time", body = llm_api::openai::OpenAiError),
        (status = "5XX", description = "The last upstream's own 5xx status, when no tier could answer", body = llm_api::openai::OpenAiError),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    trace: Option<Extension<RequestTrace>>,
    Valid(request): Valid<ChatCompletionRequest>,
    charge: Option<Extension<TokenCharge>>,
) -> Response {
    let charge = charge.map(|Extension(charge)| charge);
    let stream = request.stream;
    let mut req = GatewayRequest::new(
        Payload::Chat(request),
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
            let (tier, fallback) = (served.tier, served.fallback_type());
            let (served_by, model) = (
                served.response.served_by().to_owned(),
                served.response.model_used().to_owned(),
            );
            let fallback_reason = served.fallback_reason().map(wire::fallback_reason);
            let (retries, prompt) = (req.retries(), PromptDigest::of(&req.payload));
            let (mut tokens, mut tokens_used) = (None, None);
            if let Answer::Whole(answer) = &served.response {
                let usage = usage_of(answer, &req);
                if let Some(charge) = &charge {
                    charge.clone().charge(usage.total_tokens);
                }
                tokens_used = Some(usage.total_tokens);
                // Tokens of live answers only: a cache or template answer processed none.
                tokens = tier.is_live().then_some(usage);
            }
            let mut response = match served.response {
                Answer::Stream(live) => relay::relay(
                    &gateway,
                    req,
                    live,
                    charge,
                    model_label.clone(),
                    Arc::clone(&route),
                ),
                Answer::Whole(answer) if stream => replay(&answer, &req),
                Answer::Whole(answer) => match answer.completion.as_deref() {
                    // The upstream's own completion, counted: passed on as it is, not copied.
                    Some(completion) if completion.usage.is_some() => {
                        Json(completion).into_response()
                    }
                    _ => Json(whole(&answer, &req)).into_response(),
                },
            };
            tag(&mut response, &served_by, fallback);
            response.extensions_mut().insert(Recorded::Answered {
                service: served_by,
                model,
                tier,
                route: route.name.clone(),
                fallback_reason,
                tokens_used,
                model_label,
                tokens,
                retries,
                prompt,
            });
            response
        }
        Err(error) => {
            let failure = OpenAiFailure::new(&error, &request_id, gateway.settings.retry_after_s());
            let label = failure_label(&error, &request_id);
            let mut response = failure.into_response();
            response
                .extensions_mut()
                .insert(Recorded::failed(label, &req));
            response
        }
    }
}

/// The models clients may ask for: every route, and the models discovered instances serve
/// (which the `default` route takes).
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    responses(
        (status = 200, description = "The models clients may ask for", body = ModelList),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::openai::OpenAiError),
        (status = 403, description = "The credentials lack the `llm:generate` scope", body = llm_api::openai::OpenAiError),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn models(State(gateway): State<Arc<Gateway>>) -> Json<ModelList> {
    let mut data: Vec<Model> = Vec::new();
    let mut add = |id: String, owned_by: &str| {
        if !data.iter().any(|m| m.id == id) {
            data.push(Model {
                id,
                object: "model".to_owned(),
                created: 0,
                owned_by: owned_by.to_owned(),
            });
        }
    };
    for route in gateway.routes.iter() {
        add(route.name.clone(), "gateway");
    }
    for pool in gateway.pools.values() {
        for instance in pool.instances() {
            if let Some(model) = instance.model {
                add(model, "llm-service");
            }
        }
    }
    Json(ModelList {
        object: "list".to_owned(),
        data,
    })
}

/// A whole answer: the upstream's own completion when it sent one, else one built from the
/// answer (fallback tiers, endpoints reached through `/generate`'s shape).
fn whole(answer: &WholeAnswer, req: &GatewayRequest) -> ChatCompletion {
    if let Some(completion) = &answer.completion {
        let mut completion = completion.as_ref().clone();
        if completion.usage.is_none() {
            completion.usage = Some(estimate(req, answer.tokens_used));
        }
        return completion;
    }
    ChatCompletion {
        id: completion_id(),
        object: "chat.completion".to_owned(),
        created: unix_seconds(),
        model: answer.model_used.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".to_owned(),
                content: Some(answer.response.clone()),
                extra: Map::new(),
            },
            finish_reason: Some("stop".to_owned()),
            logprobs: None,
        }],
        usage: Some(
            answer
                .usage
                .unwrap_or_else(|| estimate(req, answer.tokens_used)),
        ),
        system_fingerprint: None,
    }
}

/// A whole answer as a stream: role, content, finish, usage, `[DONE]`.
fn replay(answer: &WholeAnswer, req: &GatewayRequest) -> Response {
    let id = completion_id();
    let created = unix_seconds();
    let model = answer.model_used.as_str();
    let chunk = |delta: Delta, finish: Option<&str>| {
        ChatCompletionChunk::delta(id.as_str(), created, model, delta, finish)
    };
    let usage = answer
        .usage
        .unwrap_or_else(|| estimate(req, answer.tokens_used));
    let chunks = [
        chunk(
            Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
            },
            None,
        ),
        chunk(
            Delta {
                role: None,
                content: Some(answer.response.clone()),
            },
            None,
        ),
        chunk(Delta::default(), Some("stop")),
        ChatCompletionChunk::usage(id.as_str(), created, model, usage),
    ];
    let events: Vec<Result<Event, Infallible>> = chunks
        .iter()
        .map(|c| Ok(json_event(c)))
        .chain(std::iter::once(Ok(Event::default().data(DONE))))
        .collect();
    Sse::new(futures::stream::iter(events)).into_response()
}

/// An SSE event carrying `value` as JSON.
pub(super) fn json_event(value: &impl serde::Serialize) -> Event {
    Event::default().data(serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned()))
}

/// The tokens a whole answer used: as its upstream reported them, else the estimate.
fn usage_of(answer: &WholeAnswer, req: &GatewayRequest) -> Usage {
    answer
        .completion
        .as_ref()
        .and_then(|c| c.usage)
        .or(answer.usage)
        .unwrap_or_else(|| estimate(req, answer.tokens_used))
}

/// The gateway's usage estimate: prompt words and the answer's tokens.
fn estimate(req: &GatewayRequest, completion_tokens: u32) -> Usage {
    Usage::new(prompt_tokens(req), completion_tokens)
}

pub(super) fn prompt_tokens(req: &GatewayRequest) -> u32 {
    match &req.payload {
        Payload::Chat(chat) => chat
            .messages
            .iter()
            .map(|m| count_words(&m.text()))
            .fold(0, u32::saturating_add),
        Payload::Generate(generate) => count_words(&generate.prompt),
    }
}
