//! Issue #16, point 5: every answer of llm-service carries the security headers — a
//! success, a stream, a 404, a 405, a 4xx of bad input, the fault API's answers.

use reqwest::header::HeaderMap;
use serde_json::json;

use crate::harness::{LlmExt, LlmService};

/// The headers and values every answer carries (the seed's).
const SECURITY: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("content-security-policy", "default-src 'self'"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

fn assert_secured(what: &str, headers: &HeaderMap) {
    for (name, value) in SECURITY {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name} in {headers:?}"
        );
    }
}

#[tokio::test]
async fn every_kind_of_answer_carries_the_security_headers() {
    let llm = LlmService::builder().start().await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                      "max_tokens": 3});
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    let answers = [
        (
            "/generate",
            llm.post_json("/generate", json!({"prompt": "hi"})).await,
            200,
        ),
        (
            "chat",
            llm.post_json("/v1/chat/completions", chat).await,
            200,
        ),
        (
            "stream",
            llm.post_json("/v1/chat/completions", stream).await,
            200,
        ),
        ("/health", llm.get("/health").await, 200),
        ("/metrics", llm.get("/metrics").await, 200),
        ("404", llm.get("/no-such-route").await, 404),
        ("405", llm.get("/generate").await, 405),
        (
            "422",
            llm.post_json("/generate", json!({"prompt": 5})).await,
            422,
        ),
        (
            "fault API",
            llm.get("/chaos/faults").await,
            0, // enabled or refused, depending on the deployment: any answer
        ),
    ];
    for (what, response, status) in answers {
        if status != 0 {
            assert_eq!(response.status().as_u16(), status, "{what}");
        }
        assert_secured(what, response.headers());
        // The whole body is read, a stream's included: the headers were not a head start.
        assert!(response.text().await.is_ok(), "{what}");
    }
}
