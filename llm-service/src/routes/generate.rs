//! `POST /generate`: the lab's contract, answered flat.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use llm_api::generate::{GenerateRequest, GenerateResponse};

use super::simulate::before_answer;
use crate::sim::count_tokens;
use crate::state::AppState;
use http_edge::ConnectionControl;
use http_edge::{BadInput, JsonBody};

/// Metrics label of this endpoint.
const ENDPOINT: &str = "generate";

/// Answers a prompt; bad input is a 4xx naming the field, never a 5xx.
#[utoipa::path(
    post,
    path = "/generate",
    tag = "lab",
    request_body(content = GenerateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer, flat", body = GenerateResponse),
        (status = 400, description = "The body is not JSON", body = llm_api::ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = llm_api::ErrorBody),
        (status = 415, description = "The content type is not `application/json`", body = llm_api::ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or out of bounds; `error.field` names it", body = llm_api::ErrorBody),
        (status = "4XX", description = "An injected `error` fault's status", body = llm_api::openai::OpenAiError),
        (status = "5XX", description = "An injected `error` fault, or a simulated failure (`SIM_FAILURE_RATE`)", body = llm_api::openai::OpenAiError),
    )
)]
pub async fn generate(
    State(state): State<AppState>,
    control: Option<axum::Extension<ConnectionControl>>,
    body: Result<JsonBody<GenerateRequest>, BadInput>,
) -> Response {
    let started = Instant::now();
    let response = answer(&state, control.as_deref(), body, started).await;
    state
        .metrics
        .observe(ENDPOINT, response.status().as_u16(), started.elapsed());
    response
}

async fn answer(
    state: &AppState,
    control: Option<&ConnectionControl>,
    body: Result<JsonBody<GenerateRequest>, BadInput>,
    started: Instant,
) -> Response {
    let JsonBody(request) = match body {
        Ok(body) => body,
        Err(bad) => return bad.into_response(),
    };
    if let Err(error) = request.validate(state.config.max_tokens) {
        return BadInput::invalid(error).into_response();
    }
    let _in_flight = state.enter();
    let faults = state.faults.for_request(false);
    if let Some(response) = before_answer(state, &faults, control).await {
        return response;
    }
    let generation = state.sim.generate(
        &request.prompt,
        request.token_budget(state.config.max_tokens),
    );
    state
        .metrics
        .add_tokens(count_tokens(&request.prompt), generation.len());
    let text = generation.text();
    Json(GenerateResponse {
        response: text.clone(),
        text,
        tokens_used: generation.len(),
        model_used: state.config.model_name.clone(),
        processing_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        service_id: state.config.service_id.clone(),
    })
    .into_response()
}
