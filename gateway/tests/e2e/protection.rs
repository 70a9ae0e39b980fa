//! Protection: invalid input is a 4xx that never reaches an upstream nor moves a breaker; an
//! oversized body is refused; more than `MAX_CONCURRENT_REQUESTS` in flight is shed at once
//! with 503 + `Retry-After`, without a crash or a memory blow-up.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Answer, Gateway, GatewayExt, LlmExt, LlmService};

/// Asserts the error envelope; returns `error.field`.
fn assert_error_envelope(answer: &Answer, what: &str) -> Value {
    assert!(
        (400..500).contains(&answer.status),
        "{what}: a 4xx, got {} {}",
        answer.status,
        answer.body
    );
    assert_eq!(
        answer.body["status"], "error",
        "{what}: error envelope: {}",
        answer.body
    );
    let error = &answer.body["error"];
    assert!(
        error["type"].is_string(),
        "{what}: error.type: {}",
        answer.body
    );
    assert!(
        error["message"].is_string(),
        "{what}: error.message: {}",
        answer.body
    );
    assert!(
        error.get("field").is_some(),
        "{what}: error.field present: {}",
        answer.body
    );
    assert!(
        answer.body["request_id"].is_string(),
        "{what}: request_id: {}",
        answer.body
    );
    error["field"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_a_4xx_that_never_reaches_an_upstream_or_a_breaker() {
    let a = LlmService::builder().start().await;
    let b = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .breaker(3, 2)
        .start()
        .await;

    // (body, acceptable field names)
    let bad_bodies: Vec<(Value, &[&str])> = vec![
        (
            json!({"prompt": "", "max_tokens": -1}),
            &["prompt", "max_tokens"],
        ),
        (json!({"prompt": ""}), &["prompt"]),
        (json!({"max_tokens": 5}), &["prompt"]),
        (json!({"prompt": "hi", "max_tokens": 0}), &["max_tokens"]),
        (
            json!({"prompt": "hi", "max_tokens": 100_000_000}),
            &["max_tokens"],
        ),
        (json!({"prompt": 42}), &["prompt"]),
        (
            json!({"prompt": "hi", "max_tokens": "ten"}),
            &["max_tokens"],
        ),
    ];
    let mut sent = 0;
    while sent < 20 {
        for (body, fields) in &bad_bodies {
            let id = format!("e2e-bad-{sent}");
            let answer = gw.generate_body(body.clone(), Some(&id)).await;
            let what = format!("{body}");
            let field = assert_error_envelope(&answer, &what);
            assert!(
                fields.contains(&field.as_str().unwrap_or("")),
                "{what}: error.field names {fields:?}, got {field}"
            );
            assert_eq!(
                answer.body["request_id"],
                id.as_str(),
                "{what}: request_id of the error"
            );
            assert!(
                [400, 422].contains(&answer.status),
                "{what}: 400 or 422, got {}",
                answer.status
            );
            sent += 1;
        }
        let broken = gw.post_raw("application/json", r#"{"prompt": "hi""#).await;
        assert_error_envelope(&broken, "broken JSON");
        assert!(
            [400, 422].contains(&broken.status),
            "broken JSON: 400 or 422, got {}",
            broken.status
        );
        let wrong_type = gw
            .post_raw("text/plain", r#"{"prompt": "hi", "max_tokens": 5}"#)
            .await;
        assert_error_envelope(&wrong_type, "text/plain content type");
        sent += 2;
    }

    assert_eq!(
        gw.breaker_state().await,
        "CLOSED",
        "breaker unchanged after {sent} bad requests"
    );
    let admin = gw.admin_status().await;
    let moved: Vec<Value> = admin["transitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["to"] != "CLOSED")
        .collect();
    assert!(
        moved.is_empty(),
        "no breaker moved: /admin/status transitions {moved:?}"
    );
    let (a_seen, b_seen) = (a.generate_count().await, b.generate_count().await);
    assert_eq!(
        (a_seen, b_seen),
        (0.0, 0.0),
        "no bad request reached an llm-service (/generate counts)"
    );
    let (_, text) = gw.metrics_text().await;
    let states: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("circuit_breaker_state"))
        .collect();
    assert!(
        states.iter().all(|l| l.ends_with(" 0")),
        "every circuit_breaker_state is 0 (closed): {states:?}"
    );

    let answer = gw.generate("a valid prompt after the bad ones").await;
    assert!(
        answer.is_primary_success(),
        "valid input still served: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_with_413() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a]).start().await;
    // Just over 1 MiB: a body limit at or under that refuses it, and the whole body is
    // written before the answer comes back (a far larger one races the server's early
    // answer and close against the client's writes: a broken pipe instead of the 413).
    let huge = json!({"prompt": "x".repeat(1024 * 1024 + 16 * 1024), "max_tokens": 5});
    let answer = gw.post_raw("application/json", huge.to_string()).await;
    assert_eq!(
        answer.status, 413,
        "a body over 1 MiB is refused: {}",
        answer.body
    );
    assert_eq!(
        answer.body["status"], "error",
        "error envelope: {}",
        answer.body
    );
    assert_eq!(
        a.generate_count().await,
        0.0,
        "it never reached the upstream"
    );
    assert_eq!(gw.breaker_state().await, "CLOSED", "breaker unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_above_the_limit_is_shed_fast_without_a_crash() {
    let a = LlmService::builder().latency(500, 500).start().await;
    let b = LlmService::builder().latency(500, 500).start().await;
    let mut gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .max_concurrent(5)
        .per_try_timeout_ms(2_000)
        .start()
        .await;

    let requests: Vec<_> = (0..50)
        .map(|n| {
            let client = gw.client();
            let url = gw.url.clone();
            tokio::spawn(async move {
                crate::harness::generate_on(
                    &client,
                    &url,
                    json!({"prompt": format!("burst {n}"), "max_tokens": 5}),
                    None,
                )
                .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap().expect("every request is answered"));
    }

    let ok = answers.iter().filter(|a| a.status == 200).count();
    let shed: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    let other: Vec<u16> = answers
        .iter()
        .map(|a| a.status)
        .filter(|s| ![200, 503].contains(s))
        .collect();
    assert!(other.is_empty(), "only 200 or 503: {other:?}");
    assert!(
        !shed.is_empty(),
        "some requests are shed with 503 ({ok} × 200)"
    );
    assert!(ok >= 5, "the admitted requests are served: {ok} × 200");
    assert!(
        ok <= 25,
        "at most the limit is served at a time; {ok} of 50 were 200, so the limit of 5 was not enforced"
    );
    for answer in &shed {
        assert!(
            answer.header("retry-after").is_some(),
            "a 503 carries Retry-After: {:?}",
            answer.headers
        );
        assert!(
            answer.elapsed < Duration::from_millis(200),
            "a 503 comes back in < 200 ms, took {:?}",
            answer.elapsed
        );
    }
    for answer in answers.iter().filter(|a| a.status == 200) {
        assert_eq!(
            answer.fallback_used(),
            Some(false),
            "admitted → served by the pool: {answer:?}"
        );
    }

    assert!(!gw.has_exited(), "the gateway is still running");
    let (status, health) = gw.health().await;
    assert_eq!(status, 200, "/health still 200: {health}");
    assert_eq!(
        gw.breaker_state().await,
        "CLOSED",
        "shedding never moves the breaker"
    );
    let rss_kib = gw.rss_kib();
    assert!(rss_kib < 100 * 1024, "VmRSS < 100 MB, got {rss_kib} KiB");
    let answer = gw.generate("after the burst").await;
    assert!(
        answer.is_primary_success(),
        "served normally after the burst: {answer:?}"
    );
    eprintln!(
        "burst of 50 with limit 5: {ok} × 200, {} × 503 (slowest 503 {:?}), VmRSS {rss_kib} KiB",
        shed.len(),
        shed.iter().map(|a| a.elapsed).max()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_route_asked_with_another_method_is_405_and_reaches_no_upstream() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a]).start().await;
    let client = reqwest::Client::new();
    for path in ["/generate", "/v1/chat/completions"] {
        for method in [reqwest::Method::GET, reqwest::Method::PUT] {
            let response = client
                .request(method.clone(), format!("{}{path}", gw.url))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        }
    }
    assert_eq!(a.generate_count().await, 0.0);
    assert_eq!(a.chat_count().await, 0.0);
}
