//! The `/chaos` routes through `oneshot`: status codes, bodies, the switch and the token
//! guard.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::Config;
use crate::routes::chaos;
use crate::state::AppState;

/// A service with the chaos API on (`CHAOS_ENABLED=true`) and `args`.
fn state(args: &[&str]) -> AppState {
    let enabled = ["--chaos-enabled", "true"].into_iter();
    AppState::new(Config::from_args(enabled.chain(args.iter().copied())).unwrap()).unwrap()
}

/// Every `/chaos` route, with a body that would add a fault.
const EVERY_ROUTE: [(&str, &str); 5] = [
    ("GET", "/chaos/inject-failure?duration_s=5"),
    ("POST", "/chaos/faults"),
    ("GET", "/chaos/faults"),
    ("DELETE", "/chaos/faults"),
    ("DELETE", "/chaos/faults/f-1"),
];

fn app(state: &AppState) -> Router {
    chaos::router().with_state(state.clone())
}

async fn call(state: &AppState, request: Request<Body>) -> (StatusCode, Value) {
    let response = app(state).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

fn request(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    request("GET", uri, "")
}

fn post(body: &str) -> Request<Body> {
    request("POST", "/chaos/faults", body)
}

#[tokio::test]
async fn posting_a_fault_answers_201_with_its_view() {
    let state = state(&[]);
    let (status, body) = call(
        &state,
        post(r#"{"kind":"error","rate":1.0,"status":503,"duration_s":30}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["id"], "f-1");
    assert_eq!(body["kind"], "error");
    assert_eq!(body["status"], 503);
    assert_eq!(body["hits"], 0);
    assert!(body["expires_in_ms"].as_u64().unwrap() <= 30_000);
    assert_eq!(
        state.faults.for_request(false).error.map(|e| e.status),
        Some(503)
    );
}

#[tokio::test]
async fn a_bad_body_is_refused_naming_the_field() {
    let state = state(&[]);
    let cases = [
        (
            r#"{"kind":"error""#,
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "body",
        ),
        ("", StatusCode::BAD_REQUEST, "invalid_json", "body"),
        (
            "[1]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "body",
        ),
        (
            r#"{"kind":"error","status":503,"duration":5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "duration",
        ),
        (
            r#"{"kind":"hang","ms":500}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "ms",
        ),
        (
            r#"{"kind":"teleport"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "kind",
        ),
        (
            r#"{"rate":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "kind",
        ),
        (
            r#"{"kind":"error","status":"x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "status",
        ),
        (
            r#"{"kind":"slow_first_token","ms":"x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "ms",
        ),
        (
            r#"{"kind":5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "kind",
        ),
        (
            r#"{"kind":"stream_stall","after_tokens":"x","ms":5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "after_tokens",
        ),
        (
            r#"{"kind":"stream_cut"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "after_tokens",
        ),
        (
            r#"{"kind":"hang","rate":"often"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "rate",
        ),
        (
            r#"{"kind":"hang","rate":2}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "rate",
        ),
        (
            r#"{"kind":"memory","mb":0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "mb",
        ),
    ];
    for (body, status, kind, field) in cases {
        let (got, answer) = call(&state, post(body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["status"], "error", "{body}");
        assert_eq!(answer["error"]["type"], kind, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    assert!(state.faults.list().is_empty());
}

#[tokio::test]
async fn faults_are_listed_and_deleted() {
    let state = state(&[]);
    call(&state, post(r#"{"kind":"hang"}"#)).await;
    call(&state, post(r#"{"kind":"latency","ms":10,"count":2}"#)).await;

    let (status, list) = call(&state, get("/chaos/faults")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["faults"].as_array().unwrap().len(), 2);
    assert_eq!(list["faults"][1]["remaining"], 2);

    let (status, body) = call(&state, request("DELETE", "/chaos/faults/f-1", "")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 1})));
    let (status, body) = call(&state, request("DELETE", "/chaos/faults/f-1", "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "not_found");
    assert_eq!(body["error"]["field"], "id");

    let (status, body) = call(&state, request("DELETE", "/chaos/faults", "")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 1})));
    let (_, list) = call(&state, get("/chaos/faults")).await;
    assert_eq!(list, json!({"faults": []}));
}

#[tokio::test]
async fn inject_failure_answers_at_once_with_what_it_did() {
    let state = state(&["--service-id", "llm_service_1"]);
    let (status, body) = call(&state, get("/chaos/inject-failure?duration_s=5")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "Failure injected for 5 seconds");
    assert_eq!(body["service_id"], "llm_service_1");
    assert_eq!(body["duration_s"], 5);
    assert_eq!(body["fault_id"], "f-1");

    let error = state.faults.for_request(false).error.unwrap();
    assert_eq!(
        (error.status, error.code.as_deref()),
        (500, Some("simulated_failure"))
    );
    assert!(state.faults.list()[0].expires_in_ms.unwrap() <= 5_000);
}

#[tokio::test]
async fn inject_failure_draws_10_to_30_seconds_by_default() {
    let state = state(&[]);
    let (status, body) = call(&state, get("/chaos/inject-failure")).await;
    assert_eq!(status, StatusCode::OK);
    let seconds = body["duration_s"].as_u64().unwrap();
    assert!((10..=30).contains(&seconds), "{body}");
    assert_eq!(
        body["message"],
        format!("Failure injected for {seconds} seconds")
    );
    let left = state.faults.list()[0].expires_in_ms.unwrap();
    assert!(left <= seconds * 1_000 && left > (seconds - 1) * 1_000);
}

#[tokio::test]
async fn inject_failure_refuses_a_bad_duration() {
    let state = state(&[]);
    for uri in [
        "/chaos/inject-failure?duration_s=abc",
        "/chaos/inject-failure?duration_s=0",
    ] {
        let (status, body) = call(&state, get(uri)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(body["error"]["field"], "duration_s", "{uri}");
    }
    assert!(state.faults.list().is_empty());
}

#[tokio::test]
async fn off_by_default_every_route_refuses_with_403_and_injects_nothing() {
    let state = AppState::new(Config::from_args::<_, &str>([]).unwrap()).unwrap();
    for (method, uri) in EVERY_ROUTE {
        let (status, body) = call(&state, request(method, uri, r#"{"kind":"hang"}"#)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(body["error"]["type"], "chaos_disabled", "{method} {uri}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("CHAOS_ENABLED=true"), "{message}");
    }
    assert!(state.faults.list().is_empty());

    // Off wins over a token: the right bearer does not turn the API on.
    let state = AppState::new(Config::from_args(["--chaos-token", "s3cret"]).unwrap()).unwrap();
    let mut request = post(r#"{"kind":"hang"}"#);
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    assert_eq!(call(&state, request).await.0, StatusCode::FORBIDDEN);
    assert!(state.faults.list().is_empty());
}

#[tokio::test]
async fn a_chaos_token_guards_every_route_with_the_bearer_scheme_only() {
    let state = state(&["--chaos-token", "s3cret"]);
    for (method, uri) in EVERY_ROUTE {
        let response = app(&state)
            .oneshot(request(method, uri, r#"{"kind":"hang"}"#))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {uri}"
        );
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer",
            "{method} {uri}"
        );
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["type"], "unauthorized", "{method} {uri}");
        assert!(!body.to_string().contains("s3cret"), "{body}");
    }
    assert!(state.faults.list().is_empty());

    let with = |name: &str, value: &str| {
        let mut request = post(r#"{"kind":"hang"}"#);
        request.headers_mut().insert(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        request
    };
    for (name, value) in [
        ("x-chaos-token", "s3cret"),
        ("authorization", "Bearer s3cre"),
        ("authorization", "Bearer s3cret!"),
        ("authorization", "Bearer "),
        ("authorization", "Basic s3cret"),
        ("authorization", "s3cret"),
    ] {
        assert_eq!(
            call(&state, with(name, value)).await.0,
            StatusCode::UNAUTHORIZED,
            "{name}: {value}"
        );
    }
    assert!(
        state.faults.list().is_empty(),
        "no refused request injected"
    );
    assert_eq!(
        call(&state, with("authorization", "Bearer s3cret")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&state, with("authorization", "bearer s3cret")).await.0,
        StatusCode::CREATED
    );
    let mut inject = get("/chaos/inject-failure?duration_s=5");
    inject
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    assert_eq!(call(&state, inject).await.0, StatusCode::OK);
    assert_eq!(state.faults.list().len(), 3);
}
