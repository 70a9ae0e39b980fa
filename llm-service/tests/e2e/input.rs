//! Bad input gets a 4xx JSON error naming the field, never a 5xx.

use serde_json::{Value, json};

use crate::harness::{LlmExt, LlmService};

async fn lab_error(llm: &LlmService, body: Value) -> (u16, Value) {
    let response = llm.post_json("/generate", body).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn generate_refuses_bad_values_naming_the_field() {
    let llm = LlmService::builder().env("MAX_TOKENS", 100).start().await;
    let cases = [
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "   "}), "prompt"),
        (json!({"prompt": "", "max_tokens": -1}), "max_tokens"),
        (json!({"prompt": "x", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "x", "max_tokens": 101}), "max_tokens"),
        (json!({"prompt": 42}), "prompt"),
        (json!({"prompt": "x", "temperature": "hot"}), "temperature"),
        (json!({"prompt": "x", "temperature": 3.5}), "temperature"),
        (json!({"max_tokens": 5}), "prompt"),
        (json!(["not", "an", "object"]), "body"),
        (json!({"prompt": "x", "model": "m".repeat(257)}), "model"),
        (json!({"prompt": "x", "model": "no spaces"}), "model"),
        (
            json!({"prompt": "x", "user_id": "u".repeat(257)}),
            "user_id",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = lab_error(&llm, body.clone()).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["status"], "error");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
        assert_eq!(error["error"]["type"], "validation_error");
    }
}

#[tokio::test]
async fn broken_json_and_wrong_content_types_are_refused() {
    let llm = LlmService::builder().start().await;
    let broken = llm
        .client
        .post(format!("{}/generate", llm.url))
        .header("content-type", "application/json")
        .body("{\"prompt\": \"unterminated")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_json");
    assert_eq!(body["error"]["field"], "body");
    let text = llm
        .client
        .post(format!("{}/generate", llm.url))
        .header("content-type", "text/plain")
        .body("prompt=hi")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    let body: Value = text.json().await.unwrap();
    assert_eq!(body["error"]["field"], "content-type");
}

#[tokio::test]
async fn chat_refuses_bad_input_in_openai_shape() {
    let llm = LlmService::builder().env("MAX_TOKENS", 100).start().await;
    let cases = [
        (json!({"model": "m", "messages": []}), "messages"),
        (json!({"model": "m"}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            json!({"model": "m", "messages": [{"content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1000}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            "stream",
        ),
        // The bounds every server shares (llm_api::limits), at their defaults.
        (
            json!({"model": "m".repeat(257), "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "root", "content": "y"}]}),
            "messages[1].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 1_000_000}),
            "n",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}),
            "stop",
        ),
    ];
    for (body, param) in cases {
        let response = llm.post_json("/v1/chat/completions", body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let llm = LlmService::builder().start().await;
    let (status, body) = llm.get_json("/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found");
}
