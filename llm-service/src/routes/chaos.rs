//! The `/chaos` API: inject, list and remove faults (README.md, "One llm-service by hand";
//! the fault specs are `llm_api::fault`'s).
//!
//! - `GET /chaos/inject-failure[?duration_s=N]`: the lab's endpoint; a 500 `error` fault on
//!   every request for N seconds (10–30 s drawn when absent), answered at once.
//! - `POST /chaos/faults`: a [`FaultSpec`] body → 201 with its
//!   [`FaultView`](llm_api::fault::FaultView).
//! - `GET /chaos/faults` → [`FaultList`]; `DELETE /chaos/faults` → `{"removed": n}`;
//!   `DELETE /chaos/faults/{id}` → `{"removed": 1}`, or 404.
//!
//! Every route first checks [`ChaosAuth`]: unless `CHAOS_ENABLED=true`, 403
//! `chaos_disabled` (saying how to enable it) and nothing is injected; when `CHAOS_TOKEN` is
//! set (and not empty), only `Authorization: Bearer <token>` passes, else 401 with
//! `WWW-Authenticate: Bearer`. Both refusals come before the body or the path is read.
//! Errors use the lab's body naming the field: 400 `invalid_json`, 422 `validation_error`,
//! 404 `not_found`, 401 `unauthorized`, 403 `chaos_disabled`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use llm_api::fault::{COMMON_FIELDS, FaultKind, FaultList, FaultSpec, FaultView, kind_fields};
use llm_api::{ErrorBody, FieldError};
use rand::RngExt;
use serde_json::{Value, json};

use crate::state::AppState;

/// The `error.code` of the faults `/chaos/inject-failure` adds.
pub const INJECTED_FAILURE_CODE: &str = "simulated_failure";

/// The `/chaos` routes; the app merges them and supplies the state.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chaos/inject-failure", get(inject_failure))
        .route(
            "/chaos/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/chaos/faults/{id}", delete(remove_fault))
}

/// Proof that the caller may use the chaos API: the API is on (`CHAOS_ENABLED`), and the
/// caller presented `CHAOS_TOKEN` as a bearer token when one is set (compared in constant
/// time). Rejects with [`ChaosRefusal`].
#[derive(Debug, Clone, Copy)]
pub struct ChaosAuth;

impl FromRequestParts<AppState> for ChaosAuth {
    type Rejection = ChaosRefusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ChaosRefusal> {
        if !state.config.chaos_enabled {
            return Err(ChaosRefusal::Disabled);
        }
        let Some(expected) = state.config.chaos_token() else {
            return Ok(Self);
        };
        match bearer_token(&parts.headers) {
            Some(given) if expected.matches(given) => Ok(Self),
            _ => Err(ChaosRefusal::Unauthorized),
        }
    }
}

/// Why a `/chaos` request was refused before it did anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosRefusal {
    /// `CHAOS_ENABLED` is not `true`: 403 `chaos_disabled`.
    Disabled,
    /// `CHAOS_TOKEN` is set and the request did not carry it as a bearer token: 401
    /// `unauthorized` with `WWW-Authenticate: Bearer`.
    Unauthorized,
}

impl IntoResponse for ChaosRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::Disabled => {
                let body = ErrorBody::new(
                    "chaos_disabled",
                    "the fault-injection API is off: start llm-service with \
                     CHAOS_ENABLED=true (or --chaos-enabled true) to use it",
                    None,
                );
                (StatusCode::FORBIDDEN, Json(body)).into_response()
            }
            Self::Unauthorized => {
                let body = ErrorBody::new(
                    "unauthorized",
                    "the chaos API needs `Authorization: Bearer <CHAOS_TOKEN>`",
                    None,
                );
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    Json(body),
                )
                    .into_response()
            }
        }
    }
}

/// The lab's endpoint: a 500 `error` fault on every request for `duration_s` seconds
/// (10–30 s drawn when absent), answered at once.
#[utoipa::path(
    get,
    path = "/chaos/inject-failure",
    tag = "chaos",
    security(("chaos_token" = [])),
    params(("duration_s" = Option<f64>, Query, description = "How long, in seconds: (0, 86400]")),
    responses(
        (status = 200, description = "The fault is active", body = crate::openapi::InjectedFailure),
        (status = 401, description = "`CHAOS_TOKEN` is set and the request does not carry it", body = ErrorBody),
        (status = 403, description = "The fault-injection API is not enabled (`CHAOS_ENABLED`)", body = ErrorBody),
        (status = 422, description = "`duration_s` is not a number in (0, 86400]", body = ErrorBody),
    )
)]
pub async fn inject_failure(
    _: ChaosAuth,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let duration_s = match requested_duration(query.as_deref()) {
        Ok(Some(seconds)) => seconds,
        Ok(None) => f64::from(rand::rng().random_range(10_u32..=30)),
        Err(e) => return validation_error(&e),
    };
    let spec = FaultSpec::new(FaultKind::Error {
        status: 500,
        code: Some(INJECTED_FAILURE_CODE.to_owned()),
        message: Some("Simulated failure injected by /chaos/inject-failure".to_owned()),
        retry_after_s: None,
    })
    .for_seconds(duration_s);
    match state.faults.add(spec) {
        Ok(view) => {
            let seconds = whole_or_fraction(duration_s);
            Json(json!({
                "message": format!("Failure injected for {seconds} seconds"),
                "service_id": state.config.service_id,
                "fault_id": view.id,
                "duration_s": seconds,
            }))
            .into_response()
        }
        Err(e) => validation_error(&e),
    }
}

/// Adds a fault; 201 with its view and `Location`.
#[utoipa::path(
    post,
    path = "/chaos/faults",
    tag = "chaos",
    security(("chaos_token" = [])),
    request_body(content = FaultSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "The fault is active", body = FaultView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "`CHAOS_TOKEN` is set and the request does not carry it", body = ErrorBody),
        (status = 403, description = "The fault-injection API is not enabled (`CHAOS_ENABLED`)", body = ErrorBody),
        (status = 422, description = "Not a valid fault; `error.field` names the field", body = ErrorBody),
        (status = 500, description = "The fault could not be added", body = ErrorBody),
    )
)]
pub async fn add_fault(_: ChaosAuth, State(state): State<AppState>, body: Bytes) -> Response {
    let spec = match parse_spec(&body) {
        Ok(spec) => spec,
        Err(bad) => return bad.into_response(),
    };
    // A memory fault touches every page it holds: not work for an async worker.
    let faults = Arc::clone(&state.faults);
    match tokio::task::spawn_blocking(move || faults.add(spec)).await {
        Ok(Ok(view)) => {
            let location = format!("/chaos/faults/{}", view.id);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(view),
            )
                .into_response()
        }
        Ok(Err(e)) => validation_error(&e),
        Err(e) => {
            tracing::error!(error = %e, "adding a fault failed");
            let body = ErrorBody::new("internal_error", "the fault could not be added", None);
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

/// The active faults.
#[utoipa::path(
    get,
    path = "/chaos/faults",
    tag = "chaos",
    security(("chaos_token" = [])),
    responses(
        (status = 200, description = "The active faults", body = FaultList),
        (status = 401, description = "`CHAOS_TOKEN` is set and the request does not carry it", body = ErrorBody),
        (status = 403, description = "The fault-injection API is not enabled (`CHAOS_ENABLED`)", body = ErrorBody),
    )
)]
pub async fn list_faults(_: ChaosAuth, State(state): State<AppState>) -> Json<FaultList> {
    Json(FaultList {
        faults: state.faults.list(),
    })
}

/// Removes every fault.
#[utoipa::path(
    delete,
    path = "/chaos/faults",
    tag = "chaos",
    security(("chaos_token" = [])),
    responses(
        (status = 200, description = "How many were removed", body = crate::openapi::Removed),
        (status = 401, description = "`CHAOS_TOKEN` is set and the request does not carry it", body = ErrorBody),
        (status = 403, description = "The fault-injection API is not enabled (`CHAOS_ENABLED`)", body = ErrorBody),
    )
)]
pub async fn clear_faults(_: ChaosAuth, State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "removed": state.faults.clear() }))
}

/// Removes one fault.
#[utoipa::path(
    delete,
    path = "/chaos/faults/{id}",
    tag = "chaos",
    security(("chaos_token" = [])),
    params(("id" = String, Path, description = "The fault's id")),
    responses(
        (status = 200, description = "Removed", body = crate::openapi::Removed),
        (status = 401, description = "`CHAOS_TOKEN` is set and the request does not carry it", body = ErrorBody),
        (status = 403, description = "The fault-injection API is not enabled (`CHAOS_ENABLED`)", body = ErrorBody),
        (status = 404, description = "No active fault has this id", body = ErrorBody),
    )
)]
pub async fn remove_fault(
    _: ChaosAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    if state.faults.remove(&id) {
        Json(json!({ "removed": 1 })).into_response()
    } else {
        let body = ErrorBody::new(
            "not_found",
            format!("no active fault with id `{id}`"),
            Some("id".to_owned()),
        );
        (StatusCode::NOT_FOUND, Json(body)).into_response()
    }
}

/// The token in `Authorization: Bearer …` (scheme in any case); no other header counts.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// `duration_s` from the query string, if given.
fn requested_duration(query: Option<&str>) -> Result<Option<f64>, FieldError> {
    let Some(raw) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("duration_s="))
    else {
        return Ok(None);
    };
    match raw.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(Some(seconds)),
        _ => Err(FieldError::new(
            "duration_s",
            "must be a number of seconds in (0, 86400]",
        )),
    }
}

/// `12` for 12.0, `1.5` for 1.5: the seed answers whole seconds.
fn whole_or_fraction(seconds: f64) -> Value {
    if seconds.fract() == 0.0 && seconds <= u32::MAX.into() {
        json!(seconds as u64)
    } else {
        json!(seconds)
    }
}

/// Why a `POST /chaos/faults` body was refused.
#[derive(Debug)]
enum BadBody {
    /// Not JSON at all: 400 `invalid_json`.
    NotJson(String),
    /// JSON, but not a valid fault: 422 `validation_error`.
    Invalid(FieldError),
}

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        match self {
            Self::NotJson(why) => {
                let message = format!("the body is not valid JSON: {why}");
                let body = ErrorBody::new("invalid_json", message, Some("body".to_owned()));
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
            Self::Invalid(e) => validation_error(&e),
        }
    }
}

/// The body as a [`FaultSpec`]; the error names the field.
fn parse_spec(body: &[u8]) -> Result<FaultSpec, BadBody> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BadBody::NotJson(e.to_string()))?;
    if !value.is_object() {
        let e = FieldError::new("body", "must be a JSON object with a `kind`");
        return Err(BadBody::Invalid(e));
    }
    // serde takes a number as a variant index (`"kind": 5` would be `unhealthy`).
    if value.get("kind").is_some_and(|kind| !kind.is_string()) {
        let e = FieldError::new("kind", "must be a string such as `error` or `latency`");
        return Err(BadBody::Invalid(e));
    }
    // serde ignores fields a kind does not take: a typo (`duration` for `duration_s`) would
    // silently make a permanent fault.
    if let (Some(kind), Some(fields)) =
        (value.get("kind").and_then(Value::as_str), value.as_object())
        && let Some(allowed) = kind_fields(kind)
        && let Some(stray) = fields
            .keys()
            .find(|key| !COMMON_FIELDS.contains(&key.as_str()) && !allowed.contains(&key.as_str()))
    {
        let e = FieldError::new(stray.clone(), format!("is not a field of a `{kind}` fault"));
        return Err(BadBody::Invalid(e));
    }
    serde_json::from_value::<FaultSpec>(value.clone()).map_err(|e| {
        let field = blamed_field(&value, &e.to_string());
        BadBody::Invalid(FieldError::new(field, e.to_string()))
    })
}

/// The field a deserialization error is about. serde loses the path inside the flattened,
/// tagged `kind`, so a field whose removal changes the outcome is the one to blame.
fn blamed_field(value: &Value, message: &str) -> String {
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return name.to_owned();
    }
    if message.starts_with("unknown variant") {
        return "kind".to_owned();
    }
    let Value::Object(fields) = value else {
        return "body".to_owned();
    };
    let without = |key: &str| {
        let mut rest = fields.clone();
        rest.remove(key);
        serde_json::from_value::<FaultSpec>(Value::Object(rest))
    };
    // An optional field in error: the body parses without it.
    if let Some(key) = fields.keys().find(|key| without(key).is_ok()) {
        return key.clone();
    }
    // A required one: without it, it is reported missing. `kind` is always required, so it
    // is blamed only when no other field is.
    let mut required = fields.keys().filter(|key| {
        without(key).is_err_and(|e| e.to_string().starts_with(&format!("missing field `{key}`")))
    });
    let first = required.next();
    match required.next() {
        Some(second) if first.is_some_and(|k| k == "kind") => second.clone(),
        _ => first.cloned().unwrap_or_else(|| "body".to_owned()),
    }
}

/// 422 `validation_error` naming `e.field`.
fn validation_error(e: &FieldError) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(ErrorBody::validation(e)),
    )
        .into_response()
}
