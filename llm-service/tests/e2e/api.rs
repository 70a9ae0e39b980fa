//! Both APIs answer in the right shape, streaming included; health and metrics.

use std::time::Duration;

use llm_api::generate::GenerateResponse;
use llm_api::openai::{ChatCompletion, ChatCompletionChunk, ModelList};
use serde_json::{Value, json};

use crate::harness::{LlmExt, LlmService, sse_payloads};

#[tokio::test]
async fn generate_answers_the_lab_contract_flat() {
    let llm = LlmService::builder()
        .env("MODEL_NAME", "gpt-4-simulation")
        .start()
        .await;
    let response = llm
        .post_json(
            "/generate",
            json!({"prompt": "What is AI?", "max_tokens": 10}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let raw: Value = response.json().await.unwrap();
    assert!(raw.get("status").is_none(), "flat, no envelope: {raw}");
    assert!(raw["processing_time_ms"].is_u64());
    let answer: GenerateResponse = serde_json::from_value(raw).unwrap();
    assert_eq!(answer.response, answer.text);
    assert!(answer.tokens_used >= 1 && answer.tokens_used <= 10);
    assert_eq!(answer.model_used, "gpt-4-simulation");
    assert_eq!(answer.service_id, llm.service_id);
}

#[tokio::test]
async fn the_same_seed_and_prompt_give_the_same_text_in_any_process() {
    let first = LlmService::builder().env("SIM_SEED", 7).start().await;
    let second = LlmService::builder().env("SIM_SEED", 7).start().await;
    let other = LlmService::builder().env("SIM_SEED", 8).start().await;
    let body = json!({"prompt": "Tell me about retries"});
    let mut answers = Vec::new();
    for llm in [&first, &first, &second, &other] {
        let answer: GenerateResponse = llm
            .post_json("/generate", body.clone())
            .await
            .json()
            .await
            .unwrap();
        assert!(answer.tokens_used <= 150, "the lab's default budget");
        answers.push(answer.response);
    }
    assert_eq!(answers[0], answers[1], "twice in one process");
    assert_eq!(
        answers[0], answers[2],
        "in another process with the same seed"
    );
    assert_ne!(answers[0], answers[3], "another seed, another text");
}

#[tokio::test]
async fn chat_answers_with_its_own_model_and_usage() {
    let llm = LlmService::builder().start().await;
    let response = llm
        .post_json(
            "/v1/chat/completions",
            json!({"model": "whatever", "messages": [{"role": "user", "content": "hello there"}],
                   "max_tokens": 6, "top_p": 0.3, "tools": []}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let completion: ChatCompletion = response.json().await.unwrap();
    assert_eq!(completion.object, "chat.completion");
    assert_eq!(completion.model, "gpt-3.5-turbo-simulation");
    assert!(completion.id.starts_with("chatcmpl-"));
    let choice = &completion.choices[0];
    assert_eq!(choice.message.role, "assistant");
    assert_eq!(choice.finish_reason.as_deref(), Some("length"));
    let usage = completion.usage.unwrap();
    assert_eq!(usage.completion_tokens, 6);
    assert_eq!(usage.prompt_tokens, 2);
    assert_eq!(usage.total_tokens, 8);
}

#[tokio::test]
async fn a_stream_has_a_role_chunk_content_a_final_chunk_usage_and_done() {
    let llm = LlmService::builder().start().await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "Explain timeouts"}],
                      "max_tokens": 8});
    let whole: ChatCompletion = llm
        .post_json("/v1/chat/completions", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let response = llm.post_json("/v1/chat/completions", streamed).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let payloads = sse_payloads(&response.text().await.unwrap());
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<ChatCompletionChunk> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.object == "chat.completion.chunk" && c.id == chunks[0].id)
    );
    let text: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.clone())
        .collect();
    assert_eq!(
        Some(text),
        whole.choices[0].message.content,
        "stream and whole answer agree"
    );
    let finals: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.finish_reason.clone())
        .collect();
    assert_eq!(finals, ["length"]);
    let usage = chunks.last().unwrap();
    assert!(usage.choices.is_empty());
    assert_eq!(usage.usage.unwrap().completion_tokens, 8);
}

#[tokio::test]
async fn models_lists_the_served_model() {
    let llm = LlmService::builder().start().await;
    let (status, body) = llm.get_json("/v1/models").await;
    assert_eq!(status, 200);
    let models: ModelList = serde_json::from_value(body).unwrap();
    assert_eq!(models.object, "list");
    assert_eq!(models.data[0].id, "gpt-3.5-turbo-simulation");
}

#[tokio::test]
async fn the_official_openai_sdk_parses_answers_and_streams() {
    let llm = LlmService::builder().start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let output = tokio::process::Command::new("python3")
        .args([script, &llm.url])
        .output()
        .await
        .expect("python3 runs (CI installs it with the openai package)");
    assert!(
        output.status.success(),
        "the openai SDK failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed["model"], "gpt-3.5-turbo-simulation");
    assert_eq!(parsed["finish_reason"], "length");
    assert_eq!(parsed["stream_text"], parsed["content"]);
    assert_eq!(parsed["stream_roles"], json!(["assistant"]));
    assert_eq!(parsed["stream_finish_reason"], "length");
    assert_eq!(parsed["stream_total_tokens"], parsed["total_tokens"]);
    assert_eq!(parsed["models"], json!(["gpt-3.5-turbo-simulation"]));
}

#[tokio::test]
async fn health_reports_uptime_load_resources_and_registration() {
    let llm = LlmService::builder().start().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, health) = llm.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["overall_status"], "healthy");
    assert!(health["uptime_s"].as_f64().unwrap() > 0.0);
    assert_eq!(health["in_flight"], 0);
    assert_eq!(health["registration"]["backend"], "none");
    assert_eq!(health["active_faults"], json!([]));
    let resources = &health["checks"]["system_resources"]["details"];
    assert!(resources["memory_percent"].as_f64().unwrap() > 0.0);
    assert!(resources["cpu_percent"].is_number());
    assert!(
        health["checks"].get("registry").is_none(),
        "only configured dependencies"
    );
    let (status, model) = llm.get_json("/model/health").await;
    assert_eq!(status, 200);
    assert_eq!(model["status"], "healthy");
    assert_eq!(model["sla_ms"], 5000);
}

#[tokio::test]
async fn in_flight_counts_requests_being_answered() {
    let llm = LlmService::builder().latency(600, 600).start().await;
    let url = format!("{}/generate", llm.url);
    let client = llm.client.clone();
    let pending = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"prompt": "slow"}))
            .send()
            .await
    });
    let seen = crate::harness::eventually(Duration::from_secs(2), || async {
        llm.get_json("/health").await.1["in_flight"] == 1
    })
    .await;
    assert!(seen, "the slow request shows in /health");
    assert_eq!(pending.await.unwrap().unwrap().status(), 200);
    assert_eq!(llm.get_json("/health").await.1["in_flight"], 0);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let llm = LlmService::builder().start().await;
    llm.post_json("/generate", json!({"prompt": "hi"})).await;
    llm.post_json("/generate", json!({"prompt": ""})).await;
    let response = llm.get("/metrics").await;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{endpoint="generate",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{endpoint="generate",status="422"} 1"#),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("tokens_generated_total"));
    assert!(text.contains("http_requests_in_flight 0"));
    // Named and labelled as the gateway's: the instance, its model, prompt and answer
    // ("hi" is one word of prompt; the refused request counts nothing).
    let processed = |operation: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix("llm_tokens_processed_total{")?
                    .contains(&format!(r#"operation="{operation}""#))
                    .then(|| line.rsplit(' ').next()?.parse::<u64>().ok())?
            })
            .unwrap_or_else(|| panic!("llm_tokens_processed_total {operation} in {text}"))
    };
    assert_eq!(processed("prompt"), 1, "{text}");
    assert!(processed("completion") > 0, "{text}");
    assert!(
        text.contains(r#"llm_tokens_processed_total{model="gpt-3.5-turbo-simulation",operation="prompt",service=""#),
        "{text}"
    );
}
