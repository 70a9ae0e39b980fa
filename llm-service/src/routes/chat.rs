//! `POST /v1/chat/completions` (whole answers and server-sent events) and `GET /v1/models`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use llm_api::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, Model, ModelList, Usage,
    completion_id, unix_seconds,
};
use serde_json::Map;

use super::simulate::before_answer;
use super::stream;
use crate::sim::count_tokens;
use crate::state::AppState;
use http_edge::ConnectionControl;
use http_edge::{BadInput, JsonBody};

/// Metrics label of this endpoint.
pub(crate) const ENDPOINT: &str = "chat_completions";

/// Answers a chat completion; any `model` is accepted and the answer names `MODEL_NAME`.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    request_body(content = ChatCompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events: \
            `chat.completion.chunk` objects, then `data: [DONE]`",
            content(
                (ChatCompletion = "application/json"),
                (llm_api::sse::ServerSentEvent = "text/event-stream"),
            )),
        (status = 400, description = "The body is not JSON", body = llm_api::openai::OpenAiError),
        (status = 413, description = "The body is larger than the limit", body = llm_api::openai::OpenAiError),
        (status = 415, description = "The content type is not `application/json`", body = llm_api::openai::OpenAiError),
        (status = 422, description = "A field is missing, of the wrong type or out of bounds; `error.param` names it", body = llm_api::openai::OpenAiError),
        (status = "4XX", description = "An injected `error` fault's status", body = llm_api::openai::OpenAiError),
        (status = "5XX", description = "An injected `error` fault, or a simulated failure (`SIM_FAILURE_RATE`)", body = llm_api::openai::OpenAiError),
    )
)]
pub async fn chat_completions(
    State(state): State<AppState>,
    control: Option<axum::Extension<ConnectionControl>>,
    body: Result<JsonBody<ChatCompletionRequest>, BadInput>,
) -> Response {
    let started = Instant::now();
    let JsonBody(request) = match body {
        Ok(body) => body,
        Err(bad) => return observed(&state, started, bad.openai()),
    };
    if let Err(error) = request.validate(state.config.max_tokens) {
        return observed(&state, started, BadInput::invalid(error).openai());
    }
    let in_flight = state.enter();
    let faults = state.faults.for_request(request.stream);
    if let Some(response) = before_answer(&state, &faults, control.as_deref()).await {
        return observed(&state, started, response);
    }
    let prefill = prefill_of(&request);
    if faults.refuse_prefill && prefill.is_some() {
        tracing::warn!("fault: refusing a trailing assistant message");
        return observed(&state, started, prefill_refused());
    }
    let budget = request
        .requested_tokens()
        .unwrap_or(llm_api::generate::DEFAULT_MAX_TOKENS.min(state.config.max_tokens));
    let prompt = request.last_user_text();
    let generation = match &prefill {
        Some(prefix) => state.sim.continue_after(&prompt, prefix, budget),
        None => state.sim.generate(&prompt, budget),
    };
    let prompt_tokens = request
        .messages
        .iter()
        .map(|m| count_tokens(&m.text()))
        .fold(0u32, u32::saturating_add);
    state.metrics.add_tokens(prompt_tokens, generation.len());
    let usage = Usage::new(prompt_tokens, generation.len());
    let id = completion_id();
    if request.stream {
        let include_usage = request
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage);
        // The stream owns the in-flight guard and records its metrics when it ends.
        return stream::respond(stream::StreamPlan {
            state: state.clone(),
            id,
            generation,
            usage: include_usage.then_some(usage),
            faults: faults.stream,
            started,
            in_flight,
        });
    }
    let completion = ChatCompletion {
        id,
        object: "chat.completion".to_owned(),
        created: unix_seconds(),
        model: state.config.model_name.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".to_owned(),
                content: Some(generation.text()),
                extra: Map::new(),
            },
            finish_reason: Some(generation.finish_reason.to_owned()),
            logprobs: None,
        }],
        usage: Some(usage),
        system_fingerprint: Some(format!("sim-{}", state.config.service_version)),
    };
    observed(&state, started, Json(completion).into_response())
}

/// Lists the one model this instance plays.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    responses((status = 200, description = "The model this instance plays", body = ModelList))
)]
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".to_owned(),
        data: vec![Model {
            id: state.config.model_name.clone(),
            object: "model".to_owned(),
            created: unix_seconds().saturating_sub(state.started.elapsed().as_secs()),
            owned_by: "llm-service".to_owned(),
        }],
    })
}

/// The text of a trailing assistant message: a prefill, whose answer is its continuation.
fn prefill_of(request: &ChatCompletionRequest) -> Option<String> {
    request
        .messages
        .last()
        .filter(|m| m.role == "assistant")
        .map(llm_api::openai::ChatMessage::text)
}

/// The `prefill_refuse` fault's answer: 400, as a provider that takes no prefill says it.
fn prefill_refused() -> Response {
    super::simulate::error_response(&crate::faults::ErrorFault {
        status: 400,
        code: Some("prefill_not_supported".to_owned()),
        message: Some("The last message must not be the assistant's".to_owned()),
        retry_after_s: None,
    })
}

fn observed(state: &AppState, started: Instant, response: Response) -> Response {
    state
        .metrics
        .observe(ENDPOINT, response.status().as_u16(), started.elapsed());
    response
}
