//! Issue #20: a stream that breaks after it reached the client — cut, or stalled past the
//! idle limit — is continued on the route's next target, by prefill or by restarting and
//! splicing; the client reads one answer, word for word the healthy one, with one `id`,
//! one `finish_reason`, one usage and one `[DONE]`. Each case starts real llm-service
//! processes: `a`, the static primary pool, breaks on command; `b`, an OpenAI-compatible
//! endpoint target with the same seed (so the same answer), continues.

use serde_json::{Value, json};

use crate::harness::{Gateway, GatewayExt, LlmExt, LlmService, prometheus_sum, python_client};

/// Tokens the request allows: more than any simulated answer has.
const MAX_TOKENS: u32 = 200;

/// A streamed chat request.
fn chat() -> Value {
    json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Explain circuit breakers and retries"}],
        "max_tokens": MAX_TOKENS,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
}

/// The healthy answer of `llm` to [`chat`], asked directly: its text, prompt tokens and
/// completion tokens.
async fn healthy(llm: &LlmService) -> (String, u64, u64) {
    let mut body = chat();
    body["stream"] = json!(false);
    let response = llm
        .client
        .post(format!("{}/v1/chat/completions", llm.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens = |field: &str| answer["usage"][field].as_u64().unwrap();
    (text, tokens("prompt_tokens"), tokens("completion_tokens"))
}

/// Two llm-services with the default seed (the same answers).
async fn pair() -> (LlmService, LlmService) {
    (
        LlmService::builder().start().await,
        LlmService::builder().start().await,
    )
}

/// `a` (primary pool) then `b` (an endpoint named `backup`, `prefill` as given when set).
async fn gateway(
    a: &LlmService,
    b: &LlmService,
    prefill: Option<&str>,
    extra: &[(&str, &str)],
) -> Gateway {
    let prefill = prefill
        .map(|p| format!(", prefill = {p}"))
        .unwrap_or_default();
    let config = format!(
        "[routes.default]\ntargets = [{{ pool = \"primary\" }}, \
         {{ url = \"{}/v1\", model = \"backup-model\", name = \"backup\"{prefill} }}]\n",
        b.url
    );
    let mut builder = Gateway::builder()
        .upstreams(&[a])
        .env("STREAM_IDLE_TIMEOUT_MS", 400)
        .config(&config);
    for (key, value) in extra {
        builder = builder.env(key, value);
    }
    builder.start().await
}

/// `llm_stream_continuations_total` for `outcome` and `reason`.
async fn continuations(gw: &Gateway, outcome: &str, reason: &str) -> f64 {
    let (_, text) = gw.metrics_text().await;
    prometheus_sum(
        &text,
        "llm_stream_continuations_total",
        &[
            &format!("outcome=\"{outcome}\""),
            &format!("reason=\"{reason}\""),
        ],
    )
}

/// Asserts that `streamed` is the healthy answer whole: its text, one id, one role chunk,
/// one `finish_reason`, usage (`completion` tokens, `prompt` tokens), one `[DONE]` last,
/// and the final chunk naming both targets.
fn assert_whole(
    streamed: &crate::harness::Streamed,
    healthy: &str,
    (prompt, completion): (u64, u64),
    a: &LlmService,
    how: &str,
) {
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.text(), healthy, "{:#?}", streamed.data);
    assert!(streamed.error().is_none(), "{:#?}", streamed.data);
    let done = streamed.data.iter().filter(|d| *d == "[DONE]").count();
    assert_eq!(done, 1, "one [DONE]: {:#?}", streamed.data);
    assert!(streamed.done(), "[DONE] last");
    let chunks = streamed.chunks();
    let ids: std::collections::BTreeSet<&str> =
        chunks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one id: {ids:?}");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| f.is_string())
        .collect();
    assert_eq!(finishes.len(), 1, "one finish_reason: {:#?}", streamed.data);
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"].is_string())
        .count();
    assert_eq!(roles, 1, "one role chunk");
    let usages: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(usages.len(), 1, "one usage chunk");
    let last = chunks.last().unwrap();
    assert!(last["usage"].is_object(), "usage last: {last}");
    assert_eq!(last["usage"]["completion_tokens"], completion, "{last}");
    assert_eq!(last["usage"]["prompt_tokens"], prompt, "{last}");
    assert_eq!(last["usage"]["total_tokens"], prompt + completion, "{last}");
    let served: Vec<&str> = last["x_gateway"]["served_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(served.len(), 2, "{last}");
    assert!(a.is(served[0]), "{last}");
    assert_eq!(served[1], "backup", "{last}");
    let broke = &last["x_gateway"]["breaks"][0];
    assert_eq!(broke["after_tokens"], 3, "{last}");
    assert_eq!(broke["resumed"], how, "{last}");
}

/// Whether `llm` has answered `count` chat requests in all within 2 s (a stream counts once
/// its last event left).
async fn answered(llm: &LlmService, count: f64) -> bool {
    for _ in 0..100 {
        if llm.chat_count().await >= count {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// Cuts or stalls `a`'s next stream after 3 tokens.
async fn break_after_3(a: &LlmService, stall: bool) {
    let fault = if stall {
        json!({"kind": "stream_stall", "after_tokens": 3, "ms": 5000, "count": 1})
    } else {
        json!({"kind": "stream_cut", "after_tokens": 3, "count": 1})
    };
    a.add_fault(fault).await;
}

#[tokio::test]
async fn a_cut_or_stalled_stream_is_continued_by_prefill_word_for_word() {
    let (a, b) = pair().await;
    let gw = gateway(&a, &b, Some("true"), &[]).await;
    let (text, prompt, completion) = healthy(&b).await;
    for stall in [false, true] {
        break_after_3(&a, stall).await;
        let streamed = gw.chat_stream(chat()).await;
        // The prefill (3 words) is part of the finishing attempt's prompt.
        assert_whole(&streamed, &text, (prompt + 3, completion), &a, "prefill");
    }
    assert_eq!(continuations(&gw, "continued", "none").await, 2.0);
}

#[tokio::test]
async fn a_target_without_prefill_restarts_and_the_answer_is_spliced() {
    let (a, b) = pair().await;
    // An endpoint's default: no prefill.
    let gw = gateway(&a, &b, None, &[]).await;
    let (text, prompt, completion) = healthy(&b).await;
    for stall in [false, true] {
        break_after_3(&a, stall).await;
        let streamed = gw.chat_stream(chat()).await;
        assert_whole(&streamed, &text, (prompt, completion), &a, "restart");
    }
    assert_eq!(continuations(&gw, "spliced", "none").await, 2.0);
}

#[tokio::test]
async fn with_auto_a_refused_prefill_is_remembered_and_the_answer_restarted() {
    let (a, b) = pair().await;
    b.add_fault(json!({"kind": "prefill_refuse"})).await;
    let gw = gateway(&a, &b, Some("\"auto\""), &[]).await;
    let (text, prompt, completion) = healthy(&b).await;
    let before = b.chat_count().await;
    break_after_3(&a, false).await;
    let first = gw.chat_stream(chat()).await;
    assert_whole(&first, &text, (prompt, completion), &a, "restart");
    assert!(
        answered(&b, before + 2.0).await,
        "the refused prefill, then the restart"
    );
    break_after_3(&a, true).await;
    let second = gw.chat_stream(chat()).await;
    assert_whole(&second, &text, (prompt, completion), &a, "restart");
    assert!(
        answered(&b, before + 3.0).await,
        "the refusal is remembered: the restart only"
    );
    assert_eq!(b.chat_count().await, before + 3.0);
}

#[tokio::test]
async fn a_restarted_answer_that_differs_or_a_spent_budget_ends_with_the_error_event() {
    let a = LlmService::builder().start().await;
    let other = LlmService::builder().env("SIM_SEED", 99).start().await;
    let gw = gateway(&a, &other, None, &[]).await;
    break_after_3(&a, false).await;
    let diverged = gw.chat_stream(chat()).await;
    assert!(!diverged.done(), "{:#?}", diverged.data);
    assert_eq!(
        diverged.error().unwrap()["error"]["code"],
        "stream_interrupted"
    );
    let ((ours, ..), (theirs, ..)) = (healthy(&a).await, healthy(&other).await);
    let delivered = diverged.text();
    assert!(
        ours.starts_with(&delivered) && !theirs.starts_with(&delivered),
        "the seeds' answers differ within 3 words; nothing of the other was spliced on: \
         {delivered:?} / {theirs:?}"
    );
    assert_eq!(continuations(&gw, "gave_up", "mismatch").await, 1.0);

    // One continuation allowed; the continuing target breaks too.
    let b = LlmService::builder().start().await;
    let gw = gateway(&a, &b, Some("true"), &[("STREAM_MAX_CONTINUATIONS", "1")]).await;
    break_after_3(&a, false).await;
    b.add_fault(json!({"kind": "stream_cut", "after_tokens": 2, "count": 1}))
        .await;
    let spent = gw.chat_stream(chat()).await;
    assert!(!spent.done(), "{:#?}", spent.data);
    assert_eq!(
        spent.error().unwrap()["error"]["code"],
        "stream_interrupted"
    );
    let (text, ..) = healthy(&b).await;
    assert!(
        text.starts_with(&spent.text()),
        "what came is the answer's beginning"
    );
    assert_eq!(
        spent.text().split_whitespace().count(),
        5,
        "3 words, then 2"
    );
    assert_eq!(continuations(&gw, "continued", "none").await, 1.0);
    assert_eq!(continuations(&gw, "gave_up", "limit").await, 1.0);

    // Several choices asked for: not a single text, not continued.
    break_after_3(&a, false).await;
    let mut several = chat();
    several["n"] = json!(2);
    let several = gw.chat_stream(several).await;
    assert!(!several.done(), "{:#?}", several.data);
    assert_eq!(
        several.error().unwrap()["error"]["code"],
        "stream_interrupted"
    );
    assert_eq!(continuations(&gw, "gave_up", "not_text").await, 1.0);

    // No continuation at all.
    let gw = gateway(&a, &b, Some("true"), &[("STREAM_MAX_CONTINUATIONS", "0")]).await;
    break_after_3(&a, false).await;
    let off = gw.chat_stream(chat()).await;
    assert!(!off.done());
    assert_eq!(off.text().split_whitespace().count(), 3);
    assert_eq!(continuations(&gw, "gave_up", "limit").await, 1.0);
}

#[tokio::test]
async fn the_official_openai_sdk_reads_a_continued_stream() {
    let (a, b) = pair().await;
    let gw = gateway(&a, &b, None, &[]).await;
    let healthy = python_client(&gw, "llm-service/tests/openai_client.py", &[&gw.url]).await;
    break_after_3(&a, false).await;
    let continued = python_client(&gw, "llm-service/tests/openai_client.py", &[&gw.url]).await;
    assert_eq!(
        continuations(&gw, "spliced", "none").await,
        1.0,
        "it was continued"
    );
    for field in [
        "stream_text",
        "stream_finish_reason",
        "stream_total_tokens",
        "stream_roles",
    ] {
        assert_eq!(continued[field], healthy[field], "{field}");
    }
}
