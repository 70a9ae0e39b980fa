//! Stream faults (`slow_first_token`, `stream_cut`, `stream_stall`, `stream_malformed`,
//! `no_done`) seen by a client reading the event stream as it arrives, and their count;
//! non-stream requests are left alone.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::faults::{active_faults, chat, prompt};
use crate::harness::{LlmExt, LlmService, sse_payloads};

/// Tokens each streamed answer has (`max_tokens` of [`chat`]).
const TOKENS: usize = 10;

/// A stream as the client saw it.
struct Streamed {
    /// Each `data:` payload, with when it arrived (from just before the request was sent).
    events: Vec<(Duration, String)>,
    /// How the body ended: `Ok` when it ended cleanly, else the read error.
    end: Result<(), reqwest::Error>,
}

impl Streamed {
    /// The payloads, in order.
    fn payloads(&self) -> Vec<&str> {
        self.events.iter().map(|(_, p)| p.as_str()).collect()
    }

    /// The content chunks (a non-empty `delta.content`): when each arrived and its text.
    fn content(&self) -> Vec<(Duration, String)> {
        self.events
            .iter()
            .filter_map(|(at, p)| content_of(p).map(|text| (*at, text)))
            .collect()
    }

    /// The `finish_reason`s sent.
    fn finish_reasons(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(_, p)| serde_json::from_str::<Value>(p).ok())
            .filter_map(|chunk| {
                chunk["choices"][0]["finish_reason"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Whether it is a whole stream: every token, one finish chunk, `[DONE]` last, clean end.
    fn assert_complete(&self) {
        assert!(self.end.is_ok(), "clean end: {:?}", self.end);
        assert_eq!(self.content().len(), TOKENS, "{:?}", self.payloads());
        assert_eq!(self.finish_reasons(), ["length"], "{:?}", self.payloads());
        assert_eq!(self.payloads().last(), Some(&"[DONE]"));
    }
}

/// The text of a content chunk; `None` for any other payload (role chunk, finish, `[DONE]`,
/// or one that is not JSON).
fn content_of(payload: &str) -> Option<String> {
    let chunk: Value = serde_json::from_str(payload).ok()?;
    let text = chunk["choices"][0]["delta"]["content"].as_str()?;
    (!text.is_empty()).then(|| text.to_owned())
}

/// Sends a streaming chat request and reads the events as they arrive, noting when.
async fn stream(llm: &LlmService) -> Streamed {
    let read = async {
        let start = Instant::now();
        let response = llm.post_json("/v1/chat/completions", chat(true)).await;
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut events = Vec::new();
        let end = loop {
            match body.next().await {
                None => break Ok(()),
                Some(Err(error)) => break Err(error),
                Some(Ok(bytes)) => {
                    let at = start.elapsed();
                    pending.extend_from_slice(&bytes);
                    while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                        let event: Vec<u8> = pending.drain(..end + 2).collect();
                        let event = String::from_utf8(event).unwrap();
                        events.extend(sse_payloads(&event).into_iter().map(|p| (at, p)));
                    }
                }
            }
        };
        Streamed { events, end }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the stream ends within 10 s")
}

#[tokio::test]
async fn slow_first_token_delays_the_first_content_chunk() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "slow_first_token", "ms": 600, "count": 1}))
        .await;
    let slow = stream(&llm).await;
    slow.assert_complete();
    let first = slow.content()[0].0;
    assert!(
        first >= Duration::from_millis(600) && first < Duration::from_millis(2000),
        "first content chunk after {first:?}, the fault asks 600 ms"
    );
    assert!(slow.events[0].0 < first, "the role chunk comes first");

    let fast = stream(&llm).await;
    fast.assert_complete();
    let first = fast.content()[0].0;
    assert!(
        first < Duration::from_millis(400),
        "count used up: first chunk after {first:?}"
    );
}

#[tokio::test]
async fn stream_cut_sends_n_tokens_then_cuts_the_connection() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "stream_cut", "after_tokens": 3, "count": 1}))
        .await;
    let cut = stream(&llm).await;
    let payloads = cut.payloads();
    let texts: Vec<String> = cut.content().into_iter().map(|(_, t)| t).collect();
    assert!(
        cut.finish_reasons().is_empty(),
        "no final chunk: {payloads:?}"
    );
    assert!(!payloads.contains(&"[DONE]"), "no [DONE]: {payloads:?}");
    let error = cut
        .end
        .as_ref()
        .expect_err("the body read ends in an error");
    assert!(
        error.is_body() || error.is_decode(),
        "an incomplete body: {error:?}"
    );
    assert!(
        active_faults(&llm).await.is_empty(),
        "used up by the stream"
    );

    let whole = stream(&llm).await;
    whole.assert_complete();
    let tokens: Vec<String> = whole.content().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts[..],
        tokens[..texts.len()],
        "the cut stream is the same answer, cut"
    );
    let role: Value = serde_json::from_str(payloads[0]).unwrap();
    assert_eq!(
        role["choices"][0]["delta"]["role"], "assistant",
        "the role chunk first"
    );
    assert_eq!(
        texts.len(),
        3,
        "exactly 3 content chunks before the cut: {payloads:?}"
    );
}

#[tokio::test]
async fn stream_stall_pauses_between_token_n_and_the_next() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "stream_stall", "after_tokens": 3, "ms": 700, "count": 1}))
        .await;
    let stalled = stream(&llm).await;
    stalled.assert_complete();
    let content = stalled.content();
    let gap = content[3].0 - content[2].0;
    // Measured from when the client saw chunk 3, which may be late on a busy machine; the
    // exact bound is the next assertion.
    assert!(
        gap >= Duration::from_millis(350) && gap < Duration::from_millis(2000),
        "gap between content chunks 3 and 4: {gap:?}, the fault asks 700 ms"
    );
    assert!(
        content[3].0 >= Duration::from_millis(700),
        "{:?}",
        content[3].0
    );

    let smooth = stream(&llm).await;
    smooth.assert_complete();
    let content = smooth.content();
    let gap = content[3].0 - content[2].0;
    assert!(
        gap < Duration::from_millis(400),
        "count used up: gap {gap:?}"
    );
}

#[tokio::test]
async fn stream_malformed_sends_one_bad_event_after_n_tokens() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "stream_malformed", "after_tokens": 3, "count": 1}))
        .await;
    let streamed = stream(&llm).await;
    streamed.assert_complete();
    let payloads = streamed.payloads();
    let bad: Vec<usize> = payloads
        .iter()
        .enumerate()
        .filter(|(_, p)| **p != "[DONE]" && serde_json::from_str::<Value>(p).is_err())
        .map(|(i, _)| i)
        .collect();
    // The role chunk, 3 content chunks, then the bad event.
    assert_eq!(bad, [4], "one bad payload, after 3 tokens: {payloads:?}");
    let before = payloads[..4]
        .iter()
        .filter(|p| content_of(p).is_some())
        .count();
    assert_eq!(before, 3, "{payloads:?}");

    let clean = stream(&llm).await;
    clean.assert_complete();
    assert!(
        clean
            .payloads()
            .iter()
            .all(|p| *p == "[DONE]" || serde_json::from_str::<Value>(p).is_ok()),
        "count used up: {:?}",
        clean.payloads()
    );
}

#[tokio::test]
async fn no_done_ends_the_stream_cleanly_without_done() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "no_done", "count": 1})).await;
    let streamed = stream(&llm).await;
    assert!(streamed.end.is_ok(), "a clean end: {:?}", streamed.end);
    assert_eq!(streamed.content().len(), TOKENS);
    assert_eq!(streamed.finish_reasons(), ["length"]);
    let payloads = streamed.payloads();
    assert!(!payloads.contains(&"[DONE]"), "{payloads:?}");
    let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
    assert_eq!(
        last["choices"][0]["finish_reason"], "length",
        "the final chunk is last"
    );

    stream(&llm).await.assert_complete();
}

#[tokio::test]
async fn stream_faults_leave_non_stream_requests_alone() {
    let llm = LlmService::builder().start().await;
    for fault in [
        json!({"kind": "slow_first_token", "ms": 1500, "count": 1}),
        json!({"kind": "stream_cut", "after_tokens": 0, "count": 1}),
        json!({"kind": "stream_stall", "after_tokens": 1, "ms": 1500, "count": 1}),
        json!({"kind": "stream_malformed", "after_tokens": 0, "count": 1}),
        json!({"kind": "no_done", "count": 1}),
    ] {
        llm.add_fault(fault).await;
    }
    let start = Instant::now();
    let response = llm.post_json("/v1/chat/completions", chat(false)).await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["finish_reason"], "length");
    let response = llm.post_json("/generate", prompt()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["tokens_used"], 10);
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );

    let listed = active_faults(&llm).await;
    assert_eq!(listed.len(), 5, "no count consumed: {listed:?}");
    for fault in &listed {
        assert_eq!(
            (&fault["hits"], &fault["remaining"]),
            (&json!(0), &json!(1)),
            "{fault}"
        );
    }
}

#[tokio::test]
async fn a_fault_placed_past_the_last_token_plays_before_the_final_chunk() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "stream_malformed", "after_tokens": 1000, "count": 1}))
        .await;
    let streamed = stream(&llm).await;
    streamed.assert_complete();
    let payloads = streamed.payloads();
    let bad: Vec<usize> = payloads
        .iter()
        .enumerate()
        .filter(|(_, p)| **p != "[DONE]" && serde_json::from_str::<Value>(p).is_err())
        .map(|(i, _)| i)
        .collect();
    // The role chunk and every content chunk, then the bad event, then the finish chunk.
    assert_eq!(bad, [1 + TOKENS], "{payloads:?}");
    assert!(
        active_faults(&llm).await.is_empty(),
        "it played, so its count is spent"
    );
}
