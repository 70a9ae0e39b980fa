//! `GET /openapi.json` of the real binary (issue 16): an OpenAPI 3.x document naming the
//! model routes, whose schemas the gateway's own answers follow.

use serde_json::Value;

use crate::harness::{Gateway, GatewayExt, LlmService};

/// The `required` fields of schema `name` in `doc`.
fn required(doc: &Value, name: &str) -> Vec<String> {
    doc["components"]["schemas"][name]["required"]
        .as_array()
        .unwrap_or_else(|| panic!("schema {name} lists its required fields: {doc}"))
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_gateway_serves_its_openapi_document_with_the_model_routes() {
    let llm = LlmService::builder().latency(0, 0).start().await;
    let gw = Gateway::builder().upstreams(&[&llm]).start().await;
    let answer = gw.get("/openapi.json", "application/json").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "JSON: {answer:?}"
    );
    let doc = &answer.body;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3.x: {doc}"
    );
    for (path, method) in [
        ("/generate", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    // A real answer has every field its schema requires.
    let generated = gw.generate("What is AI?").await;
    assert_eq!(generated.status, 200, "{generated:?}");
    for field in required(doc, "GenerateData") {
        assert!(
            generated.data().get(&field).is_some(),
            "`data.{field}` is in the answer: {}",
            generated.body
        );
    }
}
