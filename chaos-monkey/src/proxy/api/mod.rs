//! The Toxiproxy 2.x HTTP API over a [`Registry`]: same routes, JSON shapes and status
//! codes, so Toxiproxy's clients drive it unchanged.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /version` | the crate version, as text |
//! | `GET /proxies` | `{name: proxy}` |
//! | `POST /proxies` | 201 proxy; 409 name taken; 400 bad body |
//! | `POST /populate` | 201 `{"proxies": [...]}` |
//! | `POST /reset` | 204: every proxy enabled, every toxic removed |
//! | `GET`/`POST`/`DELETE /proxies/{proxy}` | proxy; update → 200 proxy; 204 |
//! | `GET`/`POST /proxies/{proxy}/toxics` | `[toxic]`; 200 toxic, 409 name taken |
//! | `GET`/`POST`/`DELETE /proxies/{proxy}/toxics/{toxic}` | toxic; update → 200; 204 |
//!
//! Errors are `{"error": "...", "status": N}`. Bodies are read as JSON whatever their
//! content type, as Toxiproxy does.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::error::ProxyError;
use super::registry::{NewProxy, ProxyChange, Registry};

type Answer = Result<Response, ProxyError>;

/// The API's routes, every answer with the security headers.
pub fn app(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/proxies", get(list_proxies).post(create_proxy))
        .route("/populate", post(populate))
        .route("/reset", post(reset))
        .route(
            "/proxies/{proxy}",
            get(get_proxy).post(update_proxy).delete(delete_proxy),
        )
        .route(
            "/proxies/{proxy}/toxics",
            get(list_toxics).post(create_toxic),
        )
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(get_toxic).post(update_toxic).delete(delete_toxic),
        )
        .fallback(|| async { ProxyError::NoRoute })
        .method_not_allowed_fallback(|| async { ProxyError::MethodNotAllowed })
        .layer(http_edge::security::headers())
        .with_state(registry)
}

async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

async fn list_proxies(State(registry): State<Arc<Registry>>) -> Response {
    Json(registry.list()).into_response()
}

async fn create_proxy(State(registry): State<Arc<Registry>>, body: Bytes) -> Answer {
    let new = NewProxy::from_json(&parse(&body)?)?;
    let view = registry.create(new)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn populate(State(registry): State<Arc<Registry>>, body: Bytes) -> Answer {
    let body = parse(&body)?;
    let items = body
        .as_array()
        .ok_or_else(|| ProxyError::bad_request("the body must be a JSON array of proxies"))?;
    // All checked before any is created, as Toxiproxy does.
    let news = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            NewProxy::from_json(item).map_err(|error| match error {
                ProxyError::BadRequest(message) => {
                    ProxyError::BadRequest(format!("proxy {}: {message}", i + 1))
                }
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let views = registry.populate(news).await?;
    Ok((StatusCode::CREATED, Json(json!({ "proxies": views }))).into_response())
}

async fn reset(State(registry): State<Arc<Registry>>) -> Answer {
    registry.reset().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_proxy(State(registry): State<Arc<Registry>>, Path(proxy): Path<String>) -> Answer {
    Ok(Json(registry.get(&proxy)?).into_response())
}

async fn update_proxy(
    State(registry): State<Arc<Registry>>,
    Path(proxy): Path<String>,
    body: Bytes,
) -> Answer {
    registry.get(&proxy)?;
    let change = ProxyChange::from_json(&parse_or_empty(&body)?)?;
    Ok(Json(registry.update(&proxy, change).await?).into_response())
}

async fn delete_proxy(State(registry): State<Arc<Registry>>, Path(proxy): Path<String>) -> Answer {
    registry.delete(&proxy).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_toxics(State(registry): State<Arc<Registry>>, Path(proxy): Path<String>) -> Answer {
    Ok(Json(registry.toxics(&proxy)?).into_response())
}

async fn create_toxic(
    State(registry): State<Arc<Registry>>,
    Path(proxy): Path<String>,
    body: Bytes,
) -> Answer {
    registry.get(&proxy)?;
    let toxic = registry.add_toxic(&proxy, &parse(&body)?)?;
    Ok(Json(toxic).into_response())
}

async fn get_toxic(
    State(registry): State<Arc<Registry>>,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Answer {
    Ok(Json(registry.toxic(&proxy, &toxic)?).into_response())
}

async fn update_toxic(
    State(registry): State<Arc<Registry>>,
    Path((proxy, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    registry.toxic(&proxy, &toxic)?;
    let updated = registry.update_toxic(&proxy, &toxic, &parse_or_empty(&body)?)?;
    Ok(Json(updated).into_response())
}

async fn delete_toxic(
    State(registry): State<Arc<Registry>>,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Answer {
    registry.delete_toxic(&proxy, &toxic)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn parse(body: &[u8]) -> Result<Value, ProxyError> {
    serde_json::from_slice(body)
        .map_err(|error| ProxyError::bad_request(format!("bad request: {error}")))
}

/// An empty body is an empty object (an update that changes nothing).
fn parse_or_empty(body: &[u8]) -> Result<Value, ProxyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(json!({}))
    } else {
        parse(body)
    }
}

#[cfg(test)]
mod tests;
