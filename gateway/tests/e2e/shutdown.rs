//! Graceful shutdown: on SIGTERM readiness goes false, new connections are refused, the
//! requests in flight finish, and the process exits 0.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Gateway, GatewayExt, LlmExt, LlmService, generate_on, poll};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    const LATENCY_MS: u64 = 600;
    let a = LlmService::builder()
        .latency(LATENCY_MS, LATENCY_MS)
        .start()
        .await;
    let b = LlmService::builder()
        .latency(LATENCY_MS, LATENCY_MS)
        .start()
        .await;
    let mut gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .per_try_timeout_ms(3_000)
        .env("DRAIN_TIMEOUT_MS", 5_000)
        .start()
        .await;

    let in_flight: Vec<_> = (0..10)
        .map(|n| {
            let client = gw.client();
            let url = gw.url.clone();
            tokio::spawn(async move {
                generate_on(
                    &client,
                    &url,
                    json!({"prompt": format!("in flight at SIGTERM {n}"), "max_tokens": 5}),
                    None,
                )
                .await
            })
        })
        .collect();
    let upstream = poll(
        Duration::from_secs(2),
        || async { a.in_flight().await + b.in_flight().await },
        |n| *n >= 10.0,
    )
    .await;
    assert!(
        upstream.ok,
        "all 10 requests in flight at the llm-services before the signal: {}",
        upstream.value
    );

    gw.terminate().await;
    let signalled = Instant::now();
    let not_ready = poll(
        Duration::from_secs(2),
        || gw.ready_status(),
        |status| *status != Some(200),
    )
    .await;
    assert!(
        not_ready.ok,
        "/ready turns 503 (or refuses the connection) after SIGTERM; it answered {:?}",
        not_ready.value
    );
    let readiness_dropped_after = signalled.elapsed();

    let mut answers = Vec::new();
    for request in in_flight {
        answers.push(request.await.unwrap());
    }
    for (n, answer) in answers.iter().enumerate() {
        let answer = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("in-flight request {n} was cut by the shutdown: {e}"));
        assert!(
            answer.is_primary_success(),
            "in-flight request {n} completes with 200 from the pool: {answer:?}"
        );
    }

    let status = gw.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit code 0 after the drain: {status}"
    );
    assert_eq!(
        gw.ready_status().await,
        None,
        "nothing listens after the exit"
    );
    eprintln!(
        "SIGTERM: readiness {:?} after the signal ({readiness_dropped_after:?}), exit after {:?}",
        not_ready.value,
        signalled.elapsed()
    );
}
