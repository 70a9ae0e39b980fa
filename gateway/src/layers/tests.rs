//! The layers that need no gateway, each on a small router (the rest are exercised by the
//! end-to-end suite: validation and shedding in `protection`, metrics everywhere).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::post;
use futures::stream;
use serde_json::Value;
use tower::ServiceExt;

use http_edge::{BodyLimits, Uploads};

use super::body::{BodyReader, read_body};
use super::request_id::request_id;
use super::{RequestId, X_REQUEST_ID};
use crate::metrics::{Metrics, Scrape};

const LIMITS: BodyLimits = BodyLimits {
    max_bytes: 16,
    deadline: Duration::from_millis(200),
    max_concurrent: 8,
};

/// Echoes the body's length and the request id it was given.
async fn echo(id: Option<axum::Extension<RequestId>>, body: Bytes) -> String {
    let id = id
        .map(|axum::Extension(RequestId(id))| id)
        .unwrap_or_default();
    format!("{} {id}", body.len())
}

fn app() -> Router {
    app_counting(Arc::new(Metrics::new().unwrap()))
}

fn app_counting(metrics: Arc<Metrics>) -> Router {
    let reader = BodyReader {
        uploads: Arc::new(Uploads::new(LIMITS)),
        metrics,
    };
    Router::new()
        .route("/generate", post(echo))
        .route("/v1/chat/completions", post(echo))
        .layer(
            tower::ServiceBuilder::new()
                .layer(from_fn(request_id))
                .layer(from_fn_with_state(reader, read_body)),
        )
}

async fn send(req: Request<Body>) -> (StatusCode, Option<String>, Bytes) {
    let response = app().oneshot(req).await.unwrap();
    let id = response
        .headers()
        .get(&X_REQUEST_ID)
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, id, body)
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_any_other_replaced() {
    let req = Request::post("/generate")
        .header(&X_REQUEST_ID, "abc-123")
        .body(Body::from("{}"))
        .unwrap();
    let (status, id, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id.as_deref(), Some("abc-123"));
    assert_eq!(body, "2 abc-123");

    for bad in ["", "has space", &"x".repeat(129)] {
        let req = Request::post("/generate")
            .header(&X_REQUEST_ID, bad)
            .body(Body::empty())
            .unwrap();
        let (_, id, body) = send(req).await;
        let id = id.unwrap();
        assert_ne!(id, bad);
        let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 7, "a UUIDv7: {id}");
        assert_eq!(body, format!("0 {id}"), "the handler sees the same id");
    }
}

#[tokio::test]
async fn new_request_ids_are_distinct_and_ordered_by_time() {
    let mut ids = Vec::new();
    for _ in 0..50 {
        let (_, id, _) = send(Request::post("/generate").body(Body::empty()).unwrap()).await;
        ids.push(uuid::Uuid::parse_str(&id.unwrap()).unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no id twice");
    let millis = |id: &uuid::Uuid| id.get_timestamp().unwrap().to_unix().0;
    assert!(
        ids.windows(2).all(|w| millis(&w[0]) <= millis(&w[1])),
        "time-ordered"
    );
}

#[tokio::test]
async fn a_body_within_the_limit_reaches_the_handler_whole() {
    let chunks = ["{\"a\":", "1}"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
    let req = Request::post("/generate")
        .body(Body::from_stream(stream::iter(chunks)))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with(b"7 "), "{body:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_in_the_apis_shape() {
    let big = "x".repeat(17);
    let req = Request::post("/generate")
        .body(Body::from(big.clone()))
        .unwrap();
    let (status, id, body) = send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let lab: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(lab["status"], "error");
    assert_eq!(lab["error"]["type"], "payload_too_large");
    assert_eq!(lab["request_id"].as_str(), id.as_deref());

    let req = Request::post("/v1/chat/completions")
        .body(Body::from(big))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let openai: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(openai["error"]["type"], "invalid_request_error");
    assert!(
        openai["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16 bytes")
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_trickling_past_the_deadline_is_408_even_though_bytes_keep_coming() {
    // One byte every 50 ms: each chunk is on time, the whole body is not.
    let trickle = stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        (n < 10).then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
    });
    let req = Request::post("/generate")
        .body(Body::from_stream(trickle))
        .unwrap();
    let started = tokio::time::Instant::now();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), LIMITS.deadline);
    let lab: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(lab["error"]["type"], "request_timeout");
}

#[tokio::test]
async fn refused_bodies_are_counted_as_validation_errors() {
    let metrics = Arc::new(Metrics::new().unwrap());
    let req = Request::post("/generate")
        .body(Body::from("x".repeat(17)))
        .unwrap();
    let response = app_counting(Arc::clone(&metrics))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = metrics.render(&Scrape::default()).unwrap();
    assert!(
        text.contains(
            r#"llm_errors_total{error_code="413",error_type="validation",service="gateway"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"llm_requests_total{model="none",service="gateway",status_code="413"} 1"#),
        "{text}"
    );
}

/// The trace the access-log layer hands to the handler, as `trace_id parent_id`.
async fn trace_of(traceparent: Option<&str>) -> String {
    async fn show(
        axum::Extension(trace): axum::Extension<crate::telemetry::RequestTrace>,
    ) -> String {
        format!("{} {}", trace.0.trace_id.hex(), trace.0.parent_id.hex())
    }
    let app = Router::new()
        .route("/generate", post(show))
        .layer(from_fn(super::access_log::access_log));
    let mut req = Request::post("/generate");
    if let Some(value) = traceparent {
        req = req.header("traceparent", value);
    }
    let response = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_valid_traceparent_is_continued_with_a_span_of_its_own() {
    let shown = trace_of(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ))
    .await;
    let (trace, span) = shown.split_once(' ').unwrap();
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.len(), 16);
    assert_ne!(
        span, "00f067aa0ba902b7",
        "the request's own span, not the caller's"
    );
}

#[tokio::test]
async fn without_a_valid_traceparent_a_new_trace_starts() {
    let mut seen = Vec::new();
    for header in [
        None,
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("garbage"),
    ] {
        let shown = trace_of(header).await;
        let (trace, span) = shown.split_once(' ').unwrap();
        assert_eq!(trace.len(), 32, "{header:?}");
        assert_ne!(trace, "0".repeat(32), "{header:?}");
        assert_ne!(span, "0".repeat(16), "{header:?}");
        seen.push(trace.to_owned());
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "a new trace each time: {seen:?}");
}
