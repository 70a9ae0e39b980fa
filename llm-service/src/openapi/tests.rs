//! The document and the router cannot drift apart: every documented operation is served
//! (not the router's 404 fallback, not a 405), every other method on a documented path is
//! refused with 405, and every path the router's source registers is documented.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;
use utoipa::OpenApi;

use super::ApiDoc;
use crate::config::Config;
use crate::routes;
use crate::state::AppState;

/// The methods a route could be given.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

/// The sources that register routes (`.route("…"`).
const ROUTER_SOURCES: [&str; 2] = [
    include_str!("../routes/mod.rs"),
    include_str!("../routes/chaos.rs"),
];

/// Every (method, path template) of the document.
fn documented() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// The paths registered in the router's source, in axum's template syntax (OpenAPI's too).
fn routed_paths() -> BTreeSet<String> {
    ROUTER_SOURCES
        .iter()
        .flat_map(|source| source.split(".route(").skip(1))
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The app, its chaos API locked so no request of the test adds a fault.
fn app() -> axum::Router {
    let config = Config::from_args(["--chaos-token", "openapi-test-token"]).unwrap();
    routes::app(
        AppState::new(config).unwrap(),
        http_edge::EdgeLimits::default().body,
    )
}

/// `method path` answered by the whole app: its status and body.
async fn call(method: &Method, path: &str) -> (StatusCode, String) {
    let uri = path.replace("{id}", "no-such-fault");
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn every_route_of_the_router_is_documented() {
    let routed = routed_paths();
    assert!(routed.len() >= 10, "the scan found the routes: {routed:?}");
    let documented: BTreeSet<String> = documented().into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        routed, documented,
        "routed (left) and documented (right) paths"
    );
}

#[tokio::test]
async fn every_documented_operation_is_served_and_no_other_method() {
    let documented = documented();
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in &METHODS {
            let (status, body) = call(method, path).await;
            let fallback = status == StatusCode::NOT_FOUND && body.contains("no such route");
            if documented.contains(&(method.to_string(), path.clone())) {
                assert!(
                    !fallback && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented: {body}"
                );
            }
        }
    }
}

#[test]
fn the_document_is_openapi_3_1_with_the_request_bounds() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemas = &doc["components"]["schemas"];
    let chat = &schemas["ChatCompletionRequest"]["properties"];
    assert_eq!(chat["model"]["maxLength"], 256);
    assert_eq!(chat["messages"]["minItems"], 1);
    assert_eq!(chat["temperature"]["maximum"], 2.0);
    assert_eq!(
        schemas["GenerateRequest"]["properties"]["prompt"]["minLength"],
        1
    );
    // The chaos API says how it refuses.
    let add = &doc["paths"]["/chaos/faults"]["post"]["responses"];
    for status in ["201", "401", "403", "422"] {
        assert!(
            add.get(status).is_some(),
            "POST /chaos/faults documents {status}"
        );
    }
    // Every chaos route asks for the bearer token.
    assert_eq!(
        doc["components"]["securitySchemes"]["chaos_token"]["scheme"],
        "bearer"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for operation in item.as_object().unwrap().values() {
            let secured = operation["security"][0].get("chaos_token").is_some();
            assert_eq!(secured, path.starts_with("/chaos"), "{path}: {operation}");
        }
    }
    // A stream is documented as server-sent events.
    let ok = &doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"];
    assert!(ok.get("text/event-stream").is_some() && ok.get("application/json").is_some());
}
