//! HTTP clients for the stack: the gateway (`/generate`, `/health`, `/metrics`, the breaker
//! reset), the llm-services (`/health`, the fault API) and plain reachability probes
//! (Prometheus, Grafana). Shared by `suite` and `validate`.
//!
//! A `/generate` call never fails as a Rust error: every outcome — an answer of any status,
//! a timeout, a refused connection — is an [`Answer`], so load loops can count them.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use llm_api::fault::FaultSpec;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

/// The longest a `/generate` may take before it counts as hung: the lab's `REQUEST_TIMEOUT`
/// (30 s) and a margin.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// The longest a status read (`/health`, `/metrics`, a probe) may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP client every check uses: no proxy (the stack is on loopback), bounded
/// connection and request times.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(3))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")
}

/// One `/generate` call as the client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status; `None` when nothing came back (refused, reset, timed out).
    pub status: Option<u16>,
    /// From sending to the end of the body.
    pub elapsed: Duration,
    /// The JSON body (`Null` when absent or not JSON).
    pub body: Value,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// Why nothing came back.
    pub error: Option<String>,
}

impl Answer {
    /// HTTP 200 with `"status": "success"`.
    pub fn is_success(&self) -> bool {
        self.status == Some(200) && self.body["status"] == "success"
    }

    /// The `data` object of a success.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// `data.fallback_used` is `true`.
    pub fn fallback_used(&self) -> bool {
        self.data()["fallback_used"] == true
    }

    /// `data.fallback_type` (`secondary`, `cache`, `template`), if any.
    pub fn fallback_type(&self) -> Option<&str> {
        self.data()["fallback_type"].as_str()
    }

    /// `data.fallback_reason`, if any.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.data()["fallback_reason"].as_str()
    }

    /// `data.served_by`: the instance's `SERVICE_ID`, or `fallback_manager`.
    pub fn served_by(&self) -> Option<&str> {
        self.data()["served_by"].as_str()
    }

    /// A load-shedding answer: 503 with `Retry-After`.
    pub fn is_shed(&self) -> bool {
        self.status == Some(503) && self.retry_after.is_some()
    }

    /// A short account for a failure detail: `HTTP 503 {…}` or `no answer: …`.
    pub fn describe(&self) -> String {
        match self.status {
            Some(status) => {
                let body = self.body.to_string();
                format!("HTTP {status} {}", truncate(&body, 160))
            }
            None => format!(
                "no answer after {:.1} s: {}",
                self.elapsed.as_secs_f64(),
                self.error.as_deref().unwrap_or("unknown error")
            ),
        }
    }
}

/// The gateway under test.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    base: String,
}

impl GatewayClient {
    /// The gateway at `base` (`http://localhost:8000`; a trailing `/` is dropped).
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Its base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /generate {"prompt", "max_tokens"}`.
    pub async fn generate(&self, prompt: &str, max_tokens: u32) -> Answer {
        self.post_generate(&json!({"prompt": prompt, "max_tokens": max_tokens}), None)
            .await
    }

    /// `POST /generate` with any body, and an `x-request-id` when given.
    pub async fn post_generate(&self, body: &Value, request_id: Option<&str>) -> Answer {
        let started = Instant::now();
        let mut request = self.http.post(format!("{}/generate", self.base)).json(body);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return no_answer(started, &error),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match response.bytes().await {
            Ok(bytes) => Answer {
                status: Some(status),
                elapsed: started.elapsed(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                retry_after,
                error: None,
            },
            Err(error) => no_answer(started, &error),
        }
    }

    /// `GET /health`: its status and body (any status; an error only when unanswered or not
    /// JSON).
    pub async fn health(&self) -> anyhow::Result<(u16, Value)> {
        get_json(&self.http, &format!("{}/health", self.base)).await
    }

    /// `GET /metrics` (the JSON form), which must answer 200.
    pub async fn metrics(&self) -> anyhow::Result<Value> {
        let (status, body) = get_json(&self.http, &format!("{}/metrics", self.base)).await?;
        anyhow::ensure!(status == 200, "GET /metrics answered HTTP {status}");
        Ok(body)
    }

    /// `circuit_breaker.state` of `/metrics`: `CLOSED`, `OPEN` or `HALF_OPEN`.
    pub async fn breaker_state(&self) -> anyhow::Result<String> {
        let metrics = self.metrics().await?;
        metrics["circuit_breaker"]["state"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "/metrics has no circuit_breaker.state: {}",
                    truncate(&metrics.to_string(), 200)
                )
            })
    }

    /// `POST /admin/reset-circuit-breaker`.
    pub async fn reset_breaker(&self) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/admin/reset-circuit-breaker", self.base))
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .context("POST /admin/reset-circuit-breaker")?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "POST /admin/reset-circuit-breaker answered HTTP {status}"
        );
        Ok(())
    }
}

/// One instance as `/health` `service_discovery.services[]` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Its `SERVICE_ID` (the controller's service name in the lab).
    pub id: String,
    /// Its base URL as the gateway knows it.
    pub url: String,
    /// Whether it passes its health checks.
    pub healthy: bool,
}

/// Readings of a gateway `/health` body.
pub mod health {
    use serde_json::Value;

    use super::ServiceEntry;

    /// `overall_status`.
    pub fn overall(body: &Value) -> Option<&str> {
        body["overall_status"].as_str()
    }

    /// `service_discovery.available_services`.
    pub fn available(body: &Value) -> Option<u64> {
        body["service_discovery"]["available_services"].as_u64()
    }

    /// `circuit_breaker.state`.
    pub fn breaker(body: &Value) -> Option<&str> {
        body["circuit_breaker"]["state"].as_str()
    }

    /// `service_discovery.services[]`.
    pub fn services(body: &Value) -> Vec<ServiceEntry> {
        body["service_discovery"]["services"]
            .as_array()
            .map(|services| {
                services
                    .iter()
                    .filter_map(|s| {
                        Some(ServiceEntry {
                            id: s["id"].as_str()?.to_owned(),
                            url: s["url"].as_str()?.trim_end_matches('/').to_owned(),
                            healthy: s["healthy"].as_bool().unwrap_or(false),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `health_checks.<name>.status`.
    pub fn check_status<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
        body["health_checks"][name]["status"].as_str()
    }
}

/// The llm-services, by base URL: `/health` and the fault API.
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
}

impl LlmClient {
    /// A client for any instance.
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// `GET {base}/health`.
    pub async fn health(&self, base: &str) -> anyhow::Result<(u16, Value)> {
        get_json(&self.http, &format!("{base}/health")).await
    }

    /// `POST {base}/chaos/faults`: injects `spec`; returns the fault's id.
    pub async fn add_fault(&self, base: &str, spec: &FaultSpec) -> anyhow::Result<String> {
        let url = format!("{base}/chaos/faults");
        let response = self
            .http
            .post(&url)
            .json(spec)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.as_u16() == 201 || status.is_success(),
            "POST {url} answered HTTP {status}: {body}"
        );
        Ok(match &body["id"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        })
    }

    /// `DELETE {base}/chaos/faults`: removes every fault.
    pub async fn clear_faults(&self, base: &str) -> anyhow::Result<()> {
        let url = format!("{base}/chaos/faults");
        let response = self
            .http
            .delete(&url)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("DELETE {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "DELETE {url} answered HTTP {status}");
        Ok(())
    }
}

/// `GET url` with a short timeout: the HTTP status when anything answered.
pub async fn probe(http: &reqwest::Client, url: &str) -> Result<u16, String> {
    http.get(url)
        .timeout(STATUS_TIMEOUT)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| error_chain(&e))
}

/// `GET url` as JSON, any status.
async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = http
        .get(url)
        .timeout(STATUS_TIMEOUT)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("GET {url}: reading the body"))?;
    let body = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "GET {url} answered HTTP {status} with a body that is not JSON: {}",
            truncate(&String::from_utf8_lossy(&bytes), 120)
        )
    })?;
    Ok((status, body))
}

fn no_answer(started: Instant, error: &reqwest::Error) -> Answer {
    Answer {
        status: None,
        elapsed: started.elapsed(),
        body: Value::Null,
        retry_after: None,
        error: Some(error_chain(error)),
    }
}

/// An error and its sources on one line (reqwest's own message hides the cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
