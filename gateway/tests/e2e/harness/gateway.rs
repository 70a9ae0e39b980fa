//! The gateway's HTTP calls the tests make: `/generate`, `/v1/chat/completions`,
//! `/health`, `/metrics`, `/admin/*`, `/ready`, and its memory.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::{Gateway, LlmService};

use super::{MAX_TOKENS, prometheus_sum};

/// One answer of the gateway, timed by the test's own clock.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body as JSON (`Value::String` with the raw text when it is not JSON).
    pub body: Value,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

impl Answer {
    /// The `data` object of a success envelope.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// `data.served_by`.
    pub fn served_by(&self) -> &str {
        self.data()["served_by"].as_str().unwrap_or("")
    }

    /// `data.fallback_used`, `None` when absent or not a boolean.
    pub fn fallback_used(&self) -> Option<bool> {
        self.data()["fallback_used"].as_bool()
    }

    /// 200 from the primary pool.
    pub fn is_primary_success(&self) -> bool {
        self.status == 200 && self.fallback_used() == Some(false)
    }
}

/// The gateway suite's calls on a [`Gateway`].
pub trait GatewayExt {
    /// `POST /generate {"prompt", "max_tokens": 16}`.
    async fn generate(&self, prompt: &str) -> Answer;

    /// `POST /generate` with an `x-request-id` header.
    async fn generate_with_id(&self, prompt: &str, request_id: &str) -> Answer;

    /// `POST /generate` with any JSON body.
    async fn generate_body(&self, body: Value, request_id: Option<&str>) -> Answer;

    /// `POST /generate` with a raw body and content type.
    async fn post_raw(&self, content_type: &str, body: impl Into<String>) -> Answer;

    /// `GET path` as an [`Answer`].
    async fn get(&self, path: &str, accept: &str) -> Answer;

    /// `GET /health`: status and JSON.
    async fn health(&self) -> (u16, Value);

    /// `service_discovery.available_services` (`None` when absent or not an integer).
    async fn available_services(&self) -> Option<u64>;

    /// `GET /metrics` with `Accept: application/json`.
    async fn metrics_json(&self) -> Value;

    /// `circuit_breaker.state` of `/metrics` JSON ("" when absent).
    async fn breaker_state(&self) -> String;

    /// `GET /metrics` with `Accept: text/plain`: content type and text.
    async fn metrics_text(&self) -> (String, String);

    /// Sum of `llm_errors_total` samples labelled with `service`'s id or address.
    async fn errors_of(&self, service: &LlmService) -> f64;

    /// `GET /admin/status`.
    async fn admin_status(&self) -> Value;

    /// `POST /admin/reset-circuit-breaker`; its status.
    async fn reset_breaker(&self) -> u16;

    /// `GET /ready`'s status; `None` when the connection fails (refused, reset).
    async fn ready_status(&self) -> Option<u16>;

    /// Resident memory (`VmRSS` of `/proc/<pid>/status`) in KiB.
    fn rss_kib(&self) -> u64;

    /// `POST /v1/chat/completions` with `body`.
    async fn chat(&self, body: Value) -> Answer;

    /// `POST /v1/chat/completions` with `body` (which should ask for a stream), read event
    /// by event to the end.
    async fn chat_stream(&self, body: Value) -> Streamed;
}

impl GatewayExt for Gateway {
    async fn generate(&self, prompt: &str) -> Answer {
        self.generate_body(json!({"prompt": prompt, "max_tokens": MAX_TOKENS}), None)
            .await
    }

    async fn generate_with_id(&self, prompt: &str, request_id: &str) -> Answer {
        self.generate_body(
            json!({"prompt": prompt, "max_tokens": MAX_TOKENS}),
            Some(request_id),
        )
        .await
    }

    async fn generate_body(&self, body: Value, request_id: Option<&str>) -> Answer {
        generate_on(&self.client(), &self.url, body, request_id)
            .await
            .unwrap_or_else(|e| panic!("POST /generate was not answered: {e}"))
    }

    async fn post_raw(&self, content_type: &str, body: impl Into<String>) -> Answer {
        let started = Instant::now();
        let response = self
            .client()
            .post(format!("{}/generate", self.url))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .expect("POST /generate is answered");
        read_answer(response, started).await.unwrap()
    }

    async fn get(&self, path: &str, accept: &str) -> Answer {
        let started = Instant::now();
        let response = self
            .client()
            .get(format!("{}{path}", self.url))
            .header("accept", accept)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} was not answered: {e}"));
        read_answer(response, started).await.unwrap()
    }

    async fn health(&self) -> (u16, Value) {
        let answer = self.get("/health", "application/json").await;
        (answer.status, answer.body)
    }

    async fn available_services(&self) -> Option<u64> {
        self.health().await.1["service_discovery"]["available_services"].as_u64()
    }

    async fn metrics_json(&self) -> Value {
        self.get("/metrics", "application/json").await.body
    }

    async fn breaker_state(&self) -> String {
        self.metrics_json().await["circuit_breaker"]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn metrics_text(&self) -> (String, String) {
        let answer = self.get("/metrics", "text/plain").await;
        let content_type = answer.header("content-type").unwrap_or_default();
        let text = match answer.body {
            Value::String(text) => text,
            other => other.to_string(),
        };
        (content_type, text)
    }

    async fn errors_of(&self, service: &LlmService) -> f64 {
        let (_, text) = self.metrics_text().await;
        let by_id = prometheus_sum(
            &text,
            "llm_errors_total",
            &[&format!("\"{}\"", service.service_id)],
        );
        let by_addr = prometheus_sum(
            &text,
            "llm_errors_total",
            &[&format!("127.0.0.1:{}\"", service.port)],
        );
        by_id + by_addr
    }

    async fn admin_status(&self) -> Value {
        self.get("/admin/status", "application/json").await.body
    }

    async fn reset_breaker(&self) -> u16 {
        self.client()
            .post(format!("{}/admin/reset-circuit-breaker", self.url))
            .send()
            .await
            .expect("the reset is answered")
            .status()
            .as_u16()
    }

    async fn ready_status(&self) -> Option<u16> {
        let response = self
            .client()
            .get(format!("{}/ready", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    async fn chat(&self, body: Value) -> Answer {
        let started = Instant::now();
        let response = self
            .client()
            .post(format!("{}/v1/chat/completions", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST /v1/chat/completions is answered");
        read_answer(response, started).await.unwrap()
    }

    async fn chat_stream(&self, body: Value) -> Streamed {
        let started = Instant::now();
        let mut response = self
            .client()
            .post(format!("{}/v1/chat/completions", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST /v1/chat/completions is answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut raw = Vec::new();
        let mut clean_end = true;
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => raw.extend_from_slice(&bytes),
                Ok(None) => break,
                Err(_) => {
                    clean_end = false;
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&raw);
        let data = text
            .split("\n\n")
            .filter_map(|event| {
                let lines: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                (!lines.is_empty()).then(|| lines.join("\n"))
            })
            .collect();
        Streamed {
            status,
            headers,
            data,
            elapsed: started.elapsed(),
            clean_end,
        }
    }
}

/// A streamed chat answer as the client saw it.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// The HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Every event's `data`, in order (`[DONE]` included when sent).
    pub data: Vec<String>,
    /// From sending to the end of the body.
    pub elapsed: Duration,
    /// Whether the body ended cleanly (not with a transport error).
    pub clean_end: bool,
}

impl Streamed {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The chunks (every event but `[DONE]`) as JSON; a non-JSON event fails the test.
    pub fn chunks(&self) -> Vec<Value> {
        self.data
            .iter()
            .filter(|d| d.as_str() != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("event {d}: {e}")))
            .collect()
    }

    /// Whether the last event is `[DONE]`.
    pub fn done(&self) -> bool {
        self.data.last().map(String::as_str) == Some("[DONE]")
    }

    /// The content of every chunk, joined.
    pub fn text(&self) -> String {
        self.chunks()
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// The error event, if the stream ended with one.
    pub fn error(&self) -> Option<Value> {
        self.chunks().into_iter().find(|c| !c["error"].is_null())
    }

    /// The usage of the last chunk that carries one.
    pub fn usage(&self) -> Option<Value> {
        self.chunks()
            .into_iter()
            .rev()
            .find(|c| c["usage"].is_object())
            .map(|c| c["usage"].clone())
    }
}

/// `POST {url}/generate` on `client`; a transport error comes back as `Err`.
pub async fn generate_on(
    client: &reqwest::Client,
    url: &str,
    body: Value,
    request_id: Option<&str>,
) -> Result<Answer, String> {
    let started = Instant::now();
    let mut request = client.post(format!("{url}/generate")).json(&body);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    read_answer(response, started).await
}

async fn read_answer(response: reqwest::Response, started: Instant) -> Result<Answer, String> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer {
        status,
        body,
        headers,
        elapsed: started.elapsed(),
    })
}
