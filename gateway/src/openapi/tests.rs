//! The document and the router cannot drift apart: every documented operation is served
//! (not the router's 404 fallback, not a 405), every other method on a documented path is
//! refused with 405, and every path the router's source registers is documented.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;
use utoipa::OpenApi;

use super::ApiDoc;
use crate::config::Settings;
use crate::routes;
use crate::state::Gateway;

/// The methods a route could be given.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

/// The sources that register routes (`.route("…"`).
const ROUTER_SOURCES: [&str; 1] = [include_str!("../routes/mod.rs")];

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

/// The whole app, over one upstream that never answers (discard port).
async fn app() -> axum::Router {
    let settings =
        Settings::from_sources::<_, &str>([], &[("LLM_SERVICE_URLS", "http://127.0.0.1:9")])
            .unwrap();
    routes::app(Gateway::start(settings).await.unwrap())
}

/// `method path` answered by the whole app: its status and body.
async fn call(method: &Method, path: &str) -> (StatusCode, String) {
    let uri = path;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app().await.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn every_route_of_the_router_is_documented() {
    let routed = routed_paths();
    assert!(routed.len() >= 9, "the scan found the routes: {routed:?}");
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
fn the_document_is_openapi_3_1_with_the_request_bounds_and_both_error_shapes() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemas = &doc["components"]["schemas"];
    let chat = &schemas["ChatCompletionRequest"]["properties"];
    assert_eq!(chat["model"]["maxLength"], 256);
    assert_eq!(chat["messages"]["minItems"], 1);
    assert_eq!(
        schemas["GenerateRequest"]["properties"]["prompt"]["minLength"],
        1
    );
    let schema_of = |path: &str, status: &str| {
        doc["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // The lab's envelope outside /v1, OpenAI's error object under it.
    assert!(schema_of("/generate", "422").ends_with("/ErrorBody"));
    assert!(schema_of("/generate", "503").ends_with("/ErrorBody"));
    assert!(schema_of("/v1/chat/completions", "422").ends_with("/OpenAiError"));
    assert!(schema_of("/v1/chat/completions", "503").ends_with("/OpenAiError"));
    let ok = &doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"];
    assert!(ok.get("text/event-stream").is_some() && ok.get("application/json").is_some());
}

#[test]
fn the_security_schemes_are_declared_and_only_the_public_routes_need_none() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "x-api-key");
    let security = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    for (path, method) in [
        ("/generate", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/admin/status", "get"),
        ("/admin/reset-circuit-breaker", "post"),
        ("/admin/signals", "get"),
        ("/status", "get"),
        ("/status/app.js", "get"),
        ("/status/app.css", "get"),
    ] {
        let listed = security(path, method);
        let names: Vec<String> = listed
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} lists its security"))
            .iter()
            .flat_map(|r| r.as_object().unwrap().keys().cloned().collect::<Vec<_>>())
            .collect();
        assert_eq!(names, ["bearer", "api_key"], "{method} {path}");
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == &serde_json::json!({})),
            "{method} {path}: none needed with AUTH_MODE=none"
        );
        let responses = &doc["paths"][path][method]["responses"];
        assert!(
            responses.get("401").is_some() && responses.get("403").is_some(),
            "{path}"
        );
    }
    for path in ["/health", "/live", "/ready", "/metrics", "/openapi.json"] {
        assert!(security(path, "get").is_null(), "{path} is public");
    }
    let limited = &doc["paths"]["/generate"]["post"]["responses"]["429"]["headers"];
    assert!(limited.get("retry-after").is_some() && limited.get("x-ratelimit-limit").is_some());
}
