//! `GET /openapi.json` of the real binary (issue 16): an OpenAPI 3.x document naming the
//! model routes and the chaos API's refusals, whose schemas the service's answers follow.

use serde_json::{Value, json};

use crate::harness::{LlmExt, LlmService};

#[tokio::test]
async fn the_service_serves_its_openapi_document_with_the_model_routes() {
    let llm = LlmService::builder().latency(0, 0).start().await;
    let response = llm.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3.x: {doc}"
    );
    for (path, method) in [
        ("/generate", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/chaos/faults", "post"),
        ("/chaos/inject-failure", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    assert!(
        doc["paths"]["/chaos/faults"]["post"]["responses"]["401"].is_object(),
        "the chaos API documents its refusal"
    );
    // A real answer has every field its schema requires.
    let answer: Value = llm
        .post_json(
            "/generate",
            json!({"prompt": "What is AI?", "max_tokens": 5}),
        )
        .await
        .json()
        .await
        .unwrap();
    let required = doc["components"]["schemas"]["GenerateResponse"]["required"]
        .as_array()
        .unwrap();
    assert!(!required.is_empty());
    for field in required {
        let field = field.as_str().unwrap();
        assert!(answer.get(field).is_some(), "`{field}` is in {answer}");
    }
}
