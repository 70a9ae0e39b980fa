//! Issue #16, point 5: the security headers on every kind of answer (200, 404, 405, 413,
//! 415, 422, 503 shed, a stream), and CORS: off by default (no `access-control-*` header,
//! no preflight approved), on for the configured origins only.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::harness::{Gateway, GatewayExt, LlmService};

/// The headers and values every answer carries (the seed's).
const SECURITY: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("content-security-policy", "default-src 'self'"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

fn assert_secured(what: &str, headers: &HeaderMap) {
    for (name, value) in SECURITY {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name} in {headers:?}"
        );
    }
}

fn assert_no_cors(what: &str, headers: &HeaderMap) {
    let cors: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{what}: CORS headers {cors:?}");
}

/// A request with `origin`, as a browser sends it; a preflight when `preflight`.
async fn from_origin(
    gw: &Gateway,
    method: Method,
    path: &str,
    origin: &str,
    preflight: bool,
) -> (u16, HeaderMap) {
    let mut request = gw
        .client()
        .request(method, format!("{}{path}", gw.url))
        .header("origin", origin);
    if preflight {
        request = request
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type");
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.headers().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_answer_carries_the_security_headers_and_no_cors_by_default() {
    let a = LlmService::builder().latency(700, 700).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .max_concurrent(1)
        .per_try_timeout_ms(3_000)
        .start()
        .await;

    // One request holds the only slot while the next one is shed.
    let (client, url) = (gw.client(), gw.url.clone());
    let held = tokio::spawn(async move {
        crate::harness::generate_on(
            &client,
            &url,
            json!({"prompt": "hold", "max_tokens": 3}),
            None,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let shed = gw.generate("shed").await;
    assert_eq!(shed.status, 503, "{}", shed.body);
    let served = held.await.unwrap().unwrap();
    assert_eq!(served.status, 200, "{}", served.body);

    let mut answers = vec![("200 /generate", served), ("503 shed", shed)];
    answers.push(("200 /health", gw.get("/health", "application/json").await));
    answers.push(("200 /metrics", gw.get("/metrics", "text/plain").await));
    answers.push(("404", gw.get("/no-such-route", "application/json").await));
    answers.push((
        "404 /v1",
        gw.get("/v1/no-such-route", "application/json").await,
    ));
    answers.push(("405", gw.get("/generate", "application/json").await));
    let huge = json!({"prompt": "x".repeat(1024 * 1024 + 16 * 1024)});
    answers.push((
        "413",
        gw.post_raw("application/json", huge.to_string()).await,
    ));
    answers.push(("415", gw.post_raw("text/plain", "{}").await));
    answers.push(("422", gw.generate_body(json!({"prompt": 5}), None).await));
    let expected = [200, 503, 200, 200, 404, 404, 405, 413, 415, 422];
    for ((what, answer), status) in answers.iter().zip(expected) {
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_secured(what, &answer.headers);
        assert_no_cors(what, &answer.headers);
    }

    let stream = gw
        .chat_stream(json!({"model": "m", "stream": true, "max_tokens": 3,
                            "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(stream.status, 200);
    assert!(stream.done(), "{:?}", stream.data);
    assert_secured("a stream", &stream.headers);

    // CORS off: a browser's preflight and request get no approval.
    let origin = "https://app.example.com";
    let (_, preflight) =
        from_origin(&gw, Method::OPTIONS, "/v1/chat/completions", origin, true).await;
    assert_no_cors("a preflight", &preflight);
    assert_secured("a preflight", &preflight);
    let (status, simple) = from_origin(&gw, Method::GET, "/health", origin, false).await;
    assert_eq!(status, 200);
    assert_no_cors("a cross-origin GET", &simple);
}

#[tokio::test]
async fn cors_approves_the_configured_origins_only() {
    let a = LlmService::builder().start().await;
    let allowed = "https://app.example.com";
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .env(
            "CORS_ALLOW_ORIGINS",
            format!("{allowed}, http://localhost:3000"),
        )
        .start()
        .await;

    let (status, preflight) =
        from_origin(&gw, Method::OPTIONS, "/v1/chat/completions", allowed, true).await;
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(preflight["access-control-allow-origin"], allowed);
    let methods = preflight["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = preflight["access-control-allow-headers"].to_str().unwrap();
    assert!(headers.contains("content-type"), "{headers}");
    assert!(preflight.get("access-control-allow-credentials").is_none());
    assert_secured("an approved preflight", &preflight);

    let (status, simple) = from_origin(&gw, Method::GET, "/health", allowed, false).await;
    assert_eq!(status, 200);
    assert_eq!(simple["access-control-allow-origin"], allowed);
    let exposed = simple["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");

    let other = "https://evil.example";
    let (_, preflight) =
        from_origin(&gw, Method::OPTIONS, "/v1/chat/completions", other, true).await;
    assert!(preflight.get("access-control-allow-origin").is_none());
    let (_, simple) = from_origin(&gw, Method::GET, "/health", other, false).await;
    assert!(simple.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_bad_origin_stops_the_gateway_at_start_naming_the_setting() {
    let output = tokio::process::Command::new(test_support::binary("gateway"))
        .env("LLM_SERVICE_URLS", "http://127.0.0.1:9")
        .env("CORS_ALLOW_ORIGINS", "app.example.com/path")
        .env("PORT", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CORS_ALLOW_ORIGINS"), "{stderr}");
}
