//! `GET /admin/history`: breaker transitions and health changes read back from the history
//! database, oldest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use history::{HistoryQuery, MAX_HISTORY_LIMIT};
use llm_api::ErrorBody;
use llm_api::history::HistoryPage;
use serde::Deserialize;

use crate::layers::RequestId;
use crate::state::Gateway;

/// Entries answered without `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The longest `service` accepted, in characters.
pub const MAX_SERVICE_CHARS: usize = 200;

/// The filters of `/admin/history`, all optional.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only events at or after this instant: Unix milliseconds, or RFC 3339
    /// (`2026-12-07T14:00:00Z`).
    since: Option<String>,
    /// Only this breaker (`llm-service`, `instance:<id>`, `endpoint:<id>`) or instance id
    /// (at most 200 characters).
    service: Option<String>,
    /// At most this many entries, the latest (1–1000; default 100).
    limit: Option<String>,
}

/// Breaker transitions and health changes from the history database.
#[utoipa::path(
    get,
    path = "/admin/history",
    tag = "admin",
    params(HistoryParams),
    responses(
        (status = 200, description = "The latest matching events, oldest first", body = HistoryPage),
        (status = 400, description = "A parameter is malformed or out of bounds (`error.field` names it)", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = ErrorBody),
        (status = 403, description = "The credentials lack the `admin` scope; or, in every mode, a cross-site browser request or an address outside `ADMIN_ALLOW`", body = ErrorBody),
        (status = 404, description = "The history is off (`DATABASE_URL=off`)", body = ErrorBody),
        (status = 503, description = "The history database does not answer", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn history(
    State(gateway): State<Arc<Gateway>>,
    request_id: Option<axum::Extension<RequestId>>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Response {
    let request_id = request_id.map(|axum::Extension(RequestId(id))| id);
    let fail = |status: StatusCode, kind: &str, message: &str, field: Option<&str>| {
        let mut body = ErrorBody::new(kind, message, field.map(str::to_owned));
        body.request_id.clone_from(&request_id);
        (status, Json(body)).into_response()
    };
    let Ok(Query(params)) = params else {
        return fail(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "the query string does not parse",
            None,
        );
    };
    let query = match parse(params) {
        Ok(query) => query,
        Err((field, message)) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "validation_error",
                message,
                Some(field),
            );
        }
    };
    let Some(history) = &gateway.history else {
        return fail(
            StatusCode::NOT_FOUND,
            "history_disabled",
            "the history is off (DATABASE_URL=off)",
            None,
        );
    };
    match history.read(&query).await {
        Ok(entries) => Json(HistoryPage {
            entries,
            database: history.store().engine().to_owned(),
        })
        .into_response(),
        Err(error) => {
            tracing::warn!(target: "history", %error, "reading the history failed");
            let mut response = fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "history_unavailable",
                "the history database does not answer",
                None,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}

/// The parameters, checked: `(field, why)` for the first bad one.
fn parse(params: HistoryParams) -> Result<HistoryQuery, (&'static str, &'static str)> {
    let since_ms = match params.since.as_deref() {
        None => None,
        Some(raw) => Some(history::parse_instant(raw).ok_or((
            "since",
            "`since` is Unix milliseconds or an RFC 3339 instant",
        ))?),
    };
    let service = match params.service {
        Some(s) if s.is_empty() || s.chars().count() > MAX_SERVICE_CHARS => {
            return Err(("service", "`service` is 1 to 200 characters"));
        }
        other => other,
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
            .ok_or(("limit", "`limit` is a whole number from 1 to 1000"))?,
    };
    Ok(HistoryQuery {
        since_ms,
        service,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(since: Option<&str>, service: Option<&str>, limit: Option<&str>) -> HistoryParams {
        HistoryParams {
            since: since.map(str::to_owned),
            service: service.map(str::to_owned),
            limit: limit.map(str::to_owned),
        }
    }

    #[test]
    fn parameters_are_checked_and_defaulted() {
        assert_eq!(
            parse(params(None, None, None)),
            Ok(HistoryQuery {
                since_ms: None,
                service: None,
                limit: DEFAULT_LIMIT
            })
        );
        assert_eq!(
            parse(params(
                Some("2026-12-07T14:00:00Z"),
                Some("instance:a"),
                Some("5")
            )),
            Ok(HistoryQuery {
                since_ms: Some(1_796_652_000_000),
                service: Some("instance:a".into()),
                limit: 5
            })
        );
        assert_eq!(
            parse(params(Some("1700000000000"), None, None)).map(|q| q.since_ms),
            Ok(Some(1_700_000_000_000))
        );
        for (bad, field) in [
            (params(Some("yesterday"), None, None), "since"),
            (params(None, Some(""), None), "service"),
            (params(None, Some(&"x".repeat(201)), None), "service"),
            (params(None, None, Some("0")), "limit"),
            (params(None, None, Some("1001")), "limit"),
            (params(None, None, Some("-1")), "limit"),
        ] {
            assert_eq!(parse(bad).map_err(|(f, _)| f), Err(field));
        }
    }
}
