//! Issue #5: the OpenAI-compatible API and every upstream behaviour of its item 3, played by
//! real llm-service processes through their fault API. A second llm-service reached as an
//! OpenAI-compatible endpoint (`{url}/v1`) stands in for an external provider.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Gateway, GatewayExt, LlmExt, LlmService, poll, prometheus_sum, python_client,
};

/// A chat request for `model`, whole or streamed.
fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Explain retries with backoff"}],
        "max_tokens": 8,
        "stream": stream,
        "top_p": 0.9,
    })
}

/// A gateway whose `default` route is the static pool (`LLM_SERVICE_URLS`), then the
/// endpoint `backup` when given; `extra` is appended to the configuration.
fn config(backup: Option<&LlmService>, extra: &str) -> String {
    let mut targets = vec![r#"{ pool = "primary" }"#.to_owned()];
    if let Some(backup) = backup {
        targets.push(format!(
            r#"{{ url = "{}/v1", model = "backup-model", name = "backup" }}"#,
            backup.url
        ));
    }
    format!(
        "[routes.default]\ntargets = [{}]\n{extra}\n",
        targets.join(", ")
    )
}

/// An llm-service serving `backup-simulation`, reached as an endpoint by [`config`].
async fn backup() -> LlmService {
    LlmService::builder()
        .env("MODEL_NAME", "backup-simulation")
        .start()
        .await
}

async fn attempts(gw: &Gateway, service: &str, outcome: &str) -> f64 {
    let (_, text) = gw.metrics_text().await;
    prometheus_sum(
        &text,
        "upstream_attempts_total",
        &[
            &format!("service=\"{service}\""),
            &format!("outcome=\"{outcome}\""),
        ],
    )
}

fn instance_id(llm: &LlmService) -> String {
    format!("127.0.0.1:{}", llm.port)
}

#[tokio::test]
async fn the_official_openai_sdk_works_through_the_gateway_served_by_an_upstream() {
    let a = LlmService::builder()
        .env("MODEL_NAME", "gpt-4-simulation")
        .start()
        .await;
    let gw = Gateway::builder().upstreams(&[&a]).start().await;
    let parsed = python_client(&gw, "llm-service/tests/openai_client.py", &[&gw.url]).await;
    assert_eq!(parsed["model"], "gpt-4-simulation", "the upstream's model");
    assert_eq!(parsed["stream_finish_reason"], "length");
    assert!(!parsed["stream_text"].as_str().unwrap().is_empty());
    assert!(parsed["stream_total_tokens"].as_u64().unwrap() > 0);
    assert!(
        parsed["models"]
            .as_array()
            .unwrap()
            .contains(&json!("default"))
    );

    // Whole and streamed, by hand: served by the upstream, no fallback tier, headers set.
    let whole = gw.chat(chat("gpt-4o-mini", false)).await;
    assert_eq!(whole.status, 200, "{:?}", whole.body);
    assert_eq!(whole.body["model"], "gpt-4-simulation");
    assert!(whole.body["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(whole.header("x-fallback-tier"), None);
    assert!(a.is(&whole.header("x-served-by").unwrap()));
    assert!(whole.header("x-request-id").is_some());
    let streamed = gw.chat_stream(chat("gpt-4o-mini", true)).await;
    assert_eq!(streamed.status, 200);
    assert!(streamed.done(), "{:?}", streamed.data);
    assert_eq!(streamed.header("x-fallback-tier"), None);
    assert_eq!(streamed.chunks()[0]["model"], "gpt-4-simulation");
    let usage = streamed.usage().expect("usage at the end of every stream");
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);

    // Bad input: OpenAI's error shape, never an upstream call.
    let before = a.chat_count().await;
    let bad = gw.chat(json!({"model": "m", "messages": []})).await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["param"], "messages");
    assert_eq!(a.chat_count().await, before);
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_for_and_one_without_it_is_retried_boundedly() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a]).start().await;
    a.add_fault(json!({"kind": "error", "status": 429, "retry_after_s": 1, "count": 1}))
        .await;
    let started = Instant::now();
    let answer = gw.chat(chat("m", false)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.header("x-fallback-tier"), None);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 honoured, not a tight loop: {:?}",
        started.elapsed()
    );
    assert_eq!(a.chat_count().await, 2.0);

    a.add_fault(json!({"kind": "error", "status": 429, "count": 2}))
        .await;
    let answer = gw.chat(chat("m", false)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.header("x-fallback-tier"), None);
    assert_eq!(a.chat_count().await, 5.0, "two 429s, then an answer");

    // Always 429: three tries (retry.max_attempts), then the fallback tiers (the cache
    // holds the earlier answer to this prompt) — no loop.
    a.add_fault(json!({"kind": "error", "status": 429})).await;
    let answer = gw.chat(chat("m", false)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.header("x-fallback-tier").as_deref(), Some("cache"));
    assert_eq!(a.chat_count().await, 8.0, "exactly three more tries");
    assert_eq!(attempts(&gw, &instance_id(&a), "failure").await, 6.0);
}

#[tokio::test]
async fn a_long_retry_after_moves_to_the_next_target_at_once_and_keeps_the_first_out() {
    let a = LlmService::builder().start().await;
    let backup = backup().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .config(&config(Some(&backup), ""))
        .start()
        .await;
    a.add_fault(json!({"kind": "error", "status": 429, "retry_after_s": 30}))
        .await;
    for _ in 0..4 {
        let started = Instant::now();
        let answer = gw.chat(chat("m", false)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "no 30 s wait"
        );
        assert_eq!(
            answer.header("x-fallback-tier").as_deref(),
            Some("secondary")
        );
        assert_eq!(answer.header("x-served-by").as_deref(), Some("backup"));
        assert_eq!(
            answer.body["model"], "backup-simulation",
            "the model that served"
        );
    }
    assert_eq!(a.chat_count().await, 1.0, "asked for 30 s of quiet, got it");
}

#[tokio::test]
async fn a_500_once_is_retried_and_a_reset_before_headers_too() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a]).start().await;
    a.add_fault(json!({"kind": "error", "status": 500, "count": 1}))
        .await;
    let answer = gw.chat(chat("m", false)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.header("x-fallback-tier"), None);

    a.add_fault(json!({"kind": "reset", "count": 1})).await;
    let answer = gw.chat(chat("m", false)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.header("x-fallback-tier"), None);
    let streamed = {
        a.add_fault(json!({"kind": "reset", "count": 1})).await;
        gw.chat_stream(chat("m", true)).await
    };
    assert!(
        streamed.done(),
        "a reset before headers is retried for streams too"
    );
    assert_eq!(streamed.header("x-fallback-tier"), None);
    assert_eq!(attempts(&gw, &instance_id(&a), "failure").await, 3.0);
}

#[tokio::test]
async fn a_persistent_503_fails_over_then_surfaces_the_original_status() {
    let a = LlmService::builder().start().await;
    let b = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .breaker(100, 30)
        .config("[tiers]\ncache = false\ntemplate = false\n")
        .start()
        .await;
    for llm in [&a, &b] {
        llm.add_fault(json!({"kind": "error", "status": 503})).await;
    }
    let answer = gw.chat(chat("m", false)).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("HTTP 5xx") && !message.contains("Simulated"),
        "the gateway's words with the status class, not the upstream's: {message}"
    );
    assert!(answer.header("retry-after").is_some());
    let tried = a.chat_count().await + b.chat_count().await;
    assert!(
        (2.0..=3.0).contains(&tried),
        "both instances, within the attempts: {tried}"
    );
}

#[tokio::test]
async fn a_silent_target_is_not_retried_and_the_next_one_answers_in_time() {
    let a = LlmService::builder().start().await;
    let backup = backup().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .per_try_timeout_ms(300)
        .config(&config(Some(&backup), ""))
        .start()
        .await;
    a.add_fault(json!({"kind": "hang"})).await;
    let started = Instant::now();
    let answer = gw.chat(chat("m", false)).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.header("x-fallback-tier").as_deref(),
        Some("secondary")
    );
    assert!(
        took < Duration::from_millis(1500),
        "one per-try timeout: {took:?}"
    );
    assert_eq!(
        attempts(&gw, &instance_id(&a), "failure").await,
        1.0,
        "the silent target is tried once"
    );
    // The fail-over accounting: the fallback's model and usage, the failure counted as one.
    assert_eq!(answer.body["model"], "backup-simulation");
    assert!(answer.body["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(attempts(&gw, &instance_id(&a), "success").await, 0.0);
    assert_eq!(attempts(&gw, "backup", "success").await, 1.0);

    // Nowhere left to go: the whole request still ends inside REQUEST_TIMEOUT (5 s here).
    backup.add_fault(json!({"kind": "hang"})).await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .per_try_timeout_ms(60_000)
        .config(&config(
            Some(&backup),
            "[tiers]\ncache = false\ntemplate = false\n",
        ))
        .start()
        .await;
    let started = Instant::now();
    let answer = gw.chat(chat("m", false)).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{:?}", answer.body);
    assert!(took < Duration::from_millis(6500), "{took:?}");
}

#[tokio::test]
async fn context_length_goes_to_the_larger_route_and_content_policy_is_passed_through() {
    let small = LlmService::builder().start().await;
    let large = LlmService::builder()
        .env("MODEL_NAME", "large-context-simulation")
        .start()
        .await;
    let extra = format!(
        "context_fallback = \"long\"\n[routes.long]\ntargets = [{{ url = \"{}/v1\", model = \"big\" }}]\n\
         [routes.strict]\ntargets = [{{ pool = \"primary\" }}]\n",
        large.url
    );
    let gw = Gateway::builder()
        .upstreams(&[&small])
        .config(&config(None, &extra))
        .start()
        .await;
    let too_long =
        json!({"kind": "error", "status": 400, "code": "context_length_exceeded", "count": 1});
    small.add_fault(too_long.clone()).await;
    let answer = gw.chat(chat("any", false)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["model"], "large-context-simulation");
    assert_eq!(
        small.chat_count().await,
        1.0,
        "not retried on the same model"
    );

    // A route without a larger target: a clean 4xx with the provider's code.
    small.add_fault(too_long).await;
    let answer = gw.chat(chat("strict", false)).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["error"]["code"], "context_length_exceeded");
    assert_eq!(small.chat_count().await, 2.0);

    small
        .add_fault(json!({"kind": "error", "status": 400, "code": "content_filter", "count": 1}))
        .await;
    let answer = gw.chat(chat("any", false)).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["error"]["code"], "content_filter");
    assert_eq!(small.chat_count().await, 3.0, "not retried anywhere");
    assert_eq!(gw.breaker_state().await, "CLOSED");
}

#[tokio::test]
async fn a_slow_first_token_fails_over_before_anything_reaches_the_client() {
    let a = LlmService::builder().start().await;
    let backup = backup().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .env("STREAM_FIRST_TOKEN_TIMEOUT_MS", 300)
        .config(&config(Some(&backup), ""))
        .start()
        .await;
    a.add_fault(json!({"kind": "slow_first_token", "ms": 3000}))
        .await;
    let streamed = gw.chat_stream(chat("m", true)).await;
    assert_eq!(streamed.status, 200);
    assert!(streamed.done(), "{:?}", streamed.data);
    assert_eq!(
        streamed.header("x-fallback-tier").as_deref(),
        Some("secondary")
    );
    assert_eq!(streamed.chunks()[0]["model"], "backup-simulation");
    assert!(
        streamed.elapsed < Duration::from_millis(2000),
        "{:?}",
        streamed.elapsed
    );
    let role_chunks = streamed
        .chunks()
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"].is_string())
        .count();
    assert_eq!(role_chunks, 1, "nothing of the slow try reached the client");
    assert_eq!(attempts(&gw, &instance_id(&a), "failure").await, 1.0);
}

#[tokio::test]
async fn a_stream_cut_or_stalled_after_its_first_bytes_ends_with_an_error_never_done() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .env("STREAM_IDLE_TIMEOUT_MS", 300)
        .start()
        .await;
    a.add_fault(json!({"kind": "stream_cut", "after_tokens": 3, "count": 1}))
        .await;
    let cut = gw.chat_stream(chat("m", true)).await;
    assert_eq!(cut.status, 200);
    assert!(!cut.text().is_empty(), "tokens reached the client");
    assert!(
        !cut.done(),
        "no clean [DONE] on a truncated answer: {:?}",
        cut.data
    );
    assert_eq!(cut.error().unwrap()["error"]["code"], "stream_interrupted");
    assert!(
        cut.clean_end,
        "the gateway ends its own body properly after the error event"
    );

    a.add_fault(json!({"kind": "stream_stall", "after_tokens": 3, "ms": 5000, "count": 1}))
        .await;
    let stalled = gw.chat_stream(chat("m", true)).await;
    assert!(!stalled.done(), "{:?}", stalled.data);
    assert!(
        stalled.error().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled")
    );
    assert!(
        stalled.elapsed < Duration::from_millis(2500),
        "the idle limit: {:?}",
        stalled.elapsed
    );

    let (_, text) = gw.metrics_text().await;
    let id = instance_id(&a);
    let interrupted = prometheus_sum(
        &text,
        "llm_stream_events_total",
        &[&format!("service=\"{id}\""), "event=\"interrupted\""],
    );
    assert_eq!(interrupted, 2.0);
    assert_eq!(
        attempts(&gw, &id, "failure").await,
        2.0,
        "counted as failures"
    );
}

#[tokio::test]
async fn malformed_events_are_skipped_and_a_stream_without_done_is_finalised_at_once() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .env("STREAM_IDLE_TIMEOUT_MS", 5000)
        .start()
        .await;
    let clean = gw.chat_stream(chat("m", true)).await;
    a.add_fault(json!({"kind": "stream_malformed", "after_tokens": 2, "count": 1}))
        .await;
    let malformed = gw.chat_stream(chat("m", true)).await;
    assert!(malformed.done(), "{:?}", malformed.data);
    assert_eq!(
        malformed.text(),
        clean.text(),
        "nothing lost but the bad event"
    );

    a.add_fault(json!({"kind": "no_done", "count": 1})).await;
    let no_done = gw.chat_stream(chat("m", true)).await;
    assert!(
        no_done.done(),
        "finalised by the gateway: {:?}",
        no_done.data
    );
    assert!(no_done.usage().is_some());
    assert!(
        no_done.elapsed < Duration::from_millis(2000),
        "at once, not after the idle limit: {:?}",
        no_done.elapsed
    );

    let (_, text) = gw.metrics_text().await;
    let id = instance_id(&a);
    let count = |event: &str| {
        prometheus_sum(
            &text,
            "llm_stream_events_total",
            &[&format!("service=\"{id}\""), &format!("event=\"{event}\"")],
        )
    };
    assert_eq!(count("malformed_skipped"), 1.0);
    assert_eq!(count("finalized"), 1.0);
    assert_eq!(count("completed"), 2.0);
}

#[tokio::test]
async fn a_flapping_primary_opens_the_breaker_then_gets_its_traffic_back() {
    let a = LlmService::builder().start().await;
    let backup = backup().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .breaker(2, 1)
        .config(&config(
            Some(&backup),
            "[instance_breaker]\nfailure_threshold = 2\n",
        ))
        .start()
        .await;
    a.add_fault(json!({"kind": "error", "status": 503, "duration_s": 2}))
        .await;
    let started = Instant::now();
    let mut served_by_backup = 0;
    let mut back_at = None;
    while started.elapsed() < Duration::from_secs(8) {
        let answer = gw.chat(chat("m", false)).await;
        assert_eq!(
            answer.status, 200,
            "every request answered: {:?}",
            answer.body
        );
        match answer.header("x-fallback-tier").as_deref() {
            Some("secondary") => served_by_backup += 1,
            None if started.elapsed() > Duration::from_secs(2) => {
                back_at = Some(started.elapsed());
                break;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_by_backup > 3, "the fallback served meanwhile");
    let back_at = back_at.expect("traffic returned to the primary");
    assert!(
        back_at < Duration::from_secs(5),
        "within the recovery timeout of the recovery: {back_at:?}"
    );
    let transitions = gw.admin_status().await["transitions"].clone();
    let opened = transitions
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["breaker"] == "llm-service" && t["to"] == "OPEN");
    assert!(opened, "{transitions}");
    // The first answer back was one successful probe; the pool breaker needs a second.
    let second = gw.chat(chat("m", false)).await;
    assert_eq!(
        second.header("x-fallback-tier"),
        None,
        "the second probe is served by the primary: {:?}",
        second.body
    );
    let closed = poll(
        Duration::from_secs(3),
        || gw.breaker_state(),
        |s| s == "CLOSED",
    )
    .await;
    assert!(closed.ok, "{}", closed.value);
}

#[tokio::test]
async fn a_completed_stream_is_replayed_from_the_cache_when_its_upstream_fails() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a]).start().await;
    let first = gw.chat_stream(chat("m", true)).await;
    assert!(first.done());
    a.add_fault(json!({"kind": "error", "status": 503})).await;
    let again = gw.chat_stream(chat("m", true)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-fallback-tier").as_deref(), Some("cache"));
    assert!(again.done(), "{:?}", again.data);
    assert_eq!(again.text(), first.text(), "the same answer, replayed");
    assert!(again.usage().is_some());
}
