//! An assistant prefill (the last message the assistant's): the answer is the rest of the
//! deterministic answer, streamed or whole; the `prefill_refuse` fault answers such a
//! request 400 and leaves every other request alone.

use serde_json::{Value, json};

use crate::harness::{LlmExt, LlmService, sse_payloads};

/// A chat body for `Explain retries`, with `prefill` as a trailing assistant message.
fn chat(stream: bool, prefill: Option<&str>, max_tokens: u32) -> Value {
    let mut messages = vec![json!({"role": "user", "content": "Explain retries"})];
    if let Some(prefill) = prefill {
        messages.push(json!({"role": "assistant", "content": prefill}));
    }
    json!({"model": "m", "messages": messages, "max_tokens": max_tokens, "stream": stream,
           "stream_options": {"include_usage": true}})
}

/// A whole answer's text and usage.
async fn whole(llm: &LlmService, body: Value) -> (String, Value) {
    let response = llm.post_json("/v1/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    (text, answer["usage"].clone())
}

#[tokio::test]
async fn a_prefill_gets_the_rest_of_the_answer_streamed_or_whole() {
    let llm = LlmService::builder().latency(0, 0).start().await;
    let (answer, usage) = whole(&llm, chat(false, None, 500)).await;
    let words: Vec<&str> = answer.split(' ').collect();
    assert!(words.len() > 6, "{answer}");
    let prefix = words[..4].join(" ");

    let (rest, rest_usage) = whole(&llm, chat(false, Some(&prefix), 500)).await;
    assert_eq!(format!("{prefix}{rest}"), answer);
    assert_eq!(
        rest_usage["completion_tokens"].as_u64().unwrap() + 4,
        usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        rest_usage["prompt_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + 4,
        "the prefill is part of the prompt"
    );

    let response = llm
        .post_json("/v1/chat/completions", chat(true, Some(&prefix), 500))
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let streamed: String = sse_payloads(&body)
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, rest);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
}

#[tokio::test]
async fn prefill_refuse_answers_400_to_a_prefill_only() {
    let llm = LlmService::builder().latency(0, 0).start().await;
    llm.add_fault(json!({"kind": "prefill_refuse"})).await;
    let response = llm
        .post_json("/v1/chat/completions", chat(true, Some("Here is"), 20))
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "prefill_not_supported", "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    let (text, _) = whole(&llm, chat(false, None, 20)).await;
    assert!(!text.is_empty(), "a request without a prefill is answered");
}
