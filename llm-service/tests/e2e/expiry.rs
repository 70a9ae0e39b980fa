//! Every fault kind with a `duration_s` removes itself on time, and the service is whole
//! again afterwards (kinds with their own expiry test elsewhere are included for breadth).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::faults::{active_faults, chat, prompt};
use crate::harness::{LlmExt, LlmService, eventually, sse_payloads};

#[tokio::test]
async fn every_kind_expires_on_time_and_leaves_the_service_whole() {
    let llm = LlmService::builder().start().await;
    let kinds = [
        json!({"kind": "latency", "ms": 50}),
        json!({"kind": "error", "status": 503}),
        json!({"kind": "reset"}),
        json!({"kind": "malformed"}),
        json!({"kind": "unhealthy"}),
        json!({"kind": "slow_first_token", "ms": 50}),
        json!({"kind": "stream_cut", "after_tokens": 2}),
        json!({"kind": "stream_stall", "after_tokens": 2, "ms": 50}),
        json!({"kind": "stream_malformed", "after_tokens": 2}),
        json!({"kind": "no_done"}),
        json!({"kind": "cpu_burn", "threads": 1}),
        json!({"kind": "memory", "mb": 16}),
    ];
    let added = Instant::now();
    for mut spec in kinds.clone() {
        spec["duration_s"] = json!(1);
        llm.add_fault(spec).await;
    }
    assert_eq!(active_faults(&llm).await.len(), kinds.len());
    assert_eq!(
        llm.get_json("/health").await.0,
        503,
        "unhealthy while it lasts"
    );

    let expired = eventually(Duration::from_secs(4), || async {
        active_faults(&llm).await.is_empty()
    })
    .await;
    assert!(expired, "still active: {:?}", active_faults(&llm).await);
    assert!(
        added.elapsed() >= Duration::from_secs(1),
        "not before its time"
    );

    let (status, health) = llm.get_json("/health").await;
    assert_eq!(
        (status, health["overall_status"].as_str()),
        (200, Some("healthy"))
    );
    let answer = llm.post_json("/generate", prompt()).await;
    assert_eq!(answer.status(), 200);
    assert!(
        answer.json::<Value>().await.is_ok(),
        "a well-formed answer again"
    );
    let stream = llm.post_json("/v1/chat/completions", chat(true)).await;
    assert_eq!(stream.status(), 200);
    let payloads = sse_payloads(&stream.text().await.expect("a whole stream, not a cut"));
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert!(
        payloads[..payloads.len() - 1]
            .iter()
            .all(|p| serde_json::from_str::<Value>(p).is_ok()),
        "{payloads:?}"
    );
}
