//! The llm-service suite's helpers around the workspace's one test harness
//! (`test-support`, crates/test-support), which starts the real `llm-service` on a free
//! port, waits until it is healthy and kills it when dropped. Only what these tests alone
//! use lives here: plain HTTP calls ([`LlmExt`]), polling a condition, reading SSE.
//!
//! ```ignore
//! let llm = LlmService::builder().latency(0, 0).start().await;
//! let answer = llm.post_json("/generate", json!({"prompt": "hi"})).await;
//! ```

use std::time::Duration;

use serde_json::Value;
pub use test_support::{LlmService, RedisServer};

/// The llm-service suite's calls on an [`LlmService`].
pub trait LlmExt {
    /// `POST path` with a JSON body.
    async fn post_json(&self, path: &str, body: Value) -> reqwest::Response;
    /// `GET path`.
    async fn get(&self, path: &str) -> reqwest::Response;
    /// `GET path` as JSON, with its status.
    async fn get_json(&self, path: &str) -> (u16, Value);
}

impl LlmExt for LlmService {
    async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("the request is answered")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the request is answered")
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    test_support::poll(limit, check, |done| *done).await.ok
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}
