//! HTTP clients for the stack: the gateway (`/generate`, `/health`, `/metrics`, the breaker
//! reset), the llm-services (`/health`, the fault API) and plain reachability probes
//! (Prometheus, Grafana). Shared by `suite` and `validate`.
//!
//! A `/generate` call never fails as a Rust error: every outcome — an answer of any status,
//! a timeout, a refused connection — is an [`Answer`], so load loops can count them.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use llm_api::breaker::BreakerState;
use llm_api::envelope::{FallbackReason, FallbackType, GenerateData, GenerateSuccess};
use llm_api::fault::{FaultSpec, FaultView};
use llm_api::gateway::{GatewayHealth, ResetAnswer};
use llm_api::generate::GenerateRequest;
use llm_api::health::ServiceHealth;
use llm_api::stats::GatewayMetrics;
use llm_api::token::ChaosToken;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};
use serde_json::Value;

use super::doc::Doc;

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
    /// The success envelope: an HTTP 200 whose body is the gateway's
    /// [`GenerateSuccess`].
    pub success: Option<GenerateSuccess>,
    /// The JSON body as received (`Null` when absent or not JSON), for failure details.
    pub body: Value,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// Why nothing came back.
    pub error: Option<String>,
}

impl Answer {
    /// An answer of `status` with `body` (read as a success envelope when the status is
    /// 200), after `elapsed`.
    pub fn new(status: Option<u16>, body: Value, elapsed: Duration) -> Self {
        let success = (status == Some(200))
            .then(|| GenerateSuccess::deserialize(&body).ok())
            .flatten();
        Self {
            status,
            elapsed,
            success,
            body,
            retry_after: None,
            error: None,
        }
    }

    /// HTTP 200 with the gateway's success envelope.
    pub fn is_success(&self) -> bool {
        self.success.is_some()
    }

    /// The `data` object of a success.
    pub fn data(&self) -> Option<&GenerateData> {
        self.success.as_ref().map(|s| &s.data)
    }

    /// `data.fallback_used` is `true`.
    pub fn fallback_used(&self) -> bool {
        self.data().is_some_and(|d| d.fallback_used)
    }

    /// `data.fallback_type` (`secondary`, `cache`, `template`), if any.
    pub fn fallback_type(&self) -> Option<FallbackType> {
        self.data().and_then(|d| d.fallback_type)
    }

    /// `data.fallback_reason`, if any.
    pub fn fallback_reason(&self) -> Option<FallbackReason> {
        self.data().and_then(|d| d.fallback_reason)
    }

    /// `data.served_by`: the instance's `SERVICE_ID`, or `fallback_manager`.
    pub fn served_by(&self) -> Option<&str> {
        self.data().map(|d| d.served_by.as_str())
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

/// The name of a fallback tier, or `none`.
pub fn tier_name(tier: Option<FallbackType>) -> &'static str {
    tier.map_or("none", FallbackType::as_str)
}

/// The name of a fallback reason, or `none`.
pub fn reason_name(reason: Option<FallbackReason>) -> &'static str {
    reason.map_or("none", FallbackReason::as_str)
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
        let body = GenerateRequest {
            max_tokens: Some(max_tokens),
            ..GenerateRequest::new(prompt)
        };
        self.post_generate(&body, None).await
    }

    /// `POST /generate` with any body (a [`GenerateRequest`], or a deliberately invalid
    /// one), and an `x-request-id` when given.
    pub async fn post_generate(&self, body: &impl Serialize, request_id: Option<&str>) -> Answer {
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
            Ok(bytes) => {
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                Answer {
                    retry_after,
                    ..Answer::new(Some(status), body, started.elapsed())
                }
            }
            Err(error) => no_answer(started, &error),
        }
    }

    /// `GET /health`: its status and body (any status; an error only when unanswered or not
    /// JSON).
    pub async fn health(&self) -> anyhow::Result<Doc<GatewayHealth>> {
        get_json(&self.http, &format!("{}/health", self.base)).await
    }

    /// `GET /metrics` (the JSON form), which must answer 200.
    pub async fn metrics(&self) -> anyhow::Result<Doc<GatewayMetrics>> {
        let doc = get_json(&self.http, &format!("{}/metrics", self.base)).await?;
        anyhow::ensure!(
            doc.status == 200,
            "GET /metrics answered HTTP {}",
            doc.status
        );
        Ok(doc)
    }

    /// `circuit_breaker.state` of `/metrics`.
    pub async fn breaker_state(&self) -> anyhow::Result<BreakerState> {
        let metrics = self.metrics().await?;
        Ok(metrics.typed("GET /metrics")?.circuit_breaker.state)
    }

    /// `POST /admin/reset-circuit-breaker`: the breaker's state after the reset.
    pub async fn reset_breaker(&self) -> anyhow::Result<BreakerState> {
        let url = format!("{}/admin/reset-circuit-breaker", self.base);
        let response = self
            .http
            .post(&url)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .context("POST /admin/reset-circuit-breaker")?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "POST /admin/reset-circuit-breaker answered HTTP {status}"
        );
        let answer: ResetAnswer = read_json(response, &url).await?;
        Ok(answer.state)
    }
}

/// Readings of a gateway `/health` document.
pub mod health {
    use llm_api::breaker::BreakerState;
    use llm_api::gateway::{GatewayHealth, HealthStatus};

    use crate::suite::doc::Doc;

    /// `overall_status`, or `absent` when the body is not the gateway's `/health`.
    pub fn overall(doc: &Doc<GatewayHealth>) -> &'static str {
        doc.get().map_or("absent", |h| h.overall_status.as_str())
    }

    /// Whether `overall_status` is `want`.
    pub fn is(doc: &Doc<GatewayHealth>, want: HealthStatus) -> bool {
        doc.get().is_some_and(|h| h.overall_status == want)
    }

    /// `service_discovery.available_services`.
    pub fn available(doc: &Doc<GatewayHealth>) -> Option<u64> {
        doc.get().map(|h| h.service_discovery.available_services)
    }

    /// `circuit_breaker.state`.
    pub fn breaker(doc: &Doc<GatewayHealth>) -> Option<BreakerState> {
        doc.get().map(|h| h.circuit_breaker.state)
    }
}

/// The llm-services, by base URL: `/health` and the fault API (with their `CHAOS_TOKEN` as
/// a bearer token when one is given).
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    token: Option<ChaosToken>,
}

impl LlmClient {
    /// A client for any instance, sending no token.
    pub fn new(http: reqwest::Client) -> Self {
        Self { http, token: None }
    }

    /// The same client, sending `token` to the fault API as `Authorization: Bearer` (a
    /// sensitive header, never logged); none, or an empty one, sends nothing.
    #[must_use]
    pub fn with_token(mut self, token: Option<ChaosToken>) -> Self {
        self.token = token;
        self
    }

    /// A request to a fault API at `url`, with the token when there is one.
    fn fault_api(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        // A `ChaosToken` is printable ASCII: it always makes a header value.
        let bearer = ChaosToken::given(self.token.as_ref())
            .and_then(|token| HeaderValue::from_str(&token.bearer()).ok());
        match bearer {
            Some(mut value) => {
                value.set_sensitive(true);
                request.header(AUTHORIZATION, value)
            }
            None => request,
        }
    }

    /// `GET {base}/health`.
    pub async fn health(&self, base: &str) -> anyhow::Result<Doc<ServiceHealth>> {
        get_json(&self.http, &format!("{base}/health")).await
    }

    /// `POST {base}/chaos/faults`: injects `spec`; returns the fault's id.
    pub async fn add_fault(&self, base: &str, spec: &FaultSpec) -> anyhow::Result<String> {
        let url = format!("{base}/chaos/faults");
        let response = self
            .fault_api(reqwest::Method::POST, &url)
            .json(spec)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!(
                "POST {url} answered HTTP {status}: {}",
                truncate(&body, 200)
            );
        }
        let fault: FaultView = read_json(response, &url).await?;
        Ok(fault.id)
    }

    /// `DELETE {base}/chaos/faults`: removes every fault.
    pub async fn clear_faults(&self, base: &str) -> anyhow::Result<()> {
        let url = format!("{base}/chaos/faults");
        let response = self
            .fault_api(reqwest::Method::DELETE, &url)
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

/// `GET url` as JSON, any status, read as `T` where it is one.
async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<Doc<T>> {
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
    Ok(Doc::new(status, body))
}

/// The body of a 2xx answer to `url`, as `T`.
async fn read_json<T: DeserializeOwned>(
    response: reqwest::Response,
    url: &str,
) -> anyhow::Result<T> {
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("{url}: reading the body"))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{url} answered with a body that is not the expected type: {}",
            truncate(&String::from_utf8_lossy(&bytes), 160)
        )
    })
}

fn no_answer(started: Instant, error: &reqwest::Error) -> Answer {
    Answer {
        error: Some(error_chain(error)),
        ..Answer::new(None, Value::Null, started.elapsed())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(client: &LlmClient) -> Option<String> {
        let request = client
            .fault_api(reqwest::Method::POST, "http://127.0.0.1:1/chaos/faults")
            .build()
            .unwrap();
        let header = request.headers().get(AUTHORIZATION)?;
        assert!(header.is_sensitive());
        Some(header.to_str().unwrap().to_owned())
    }

    #[test]
    fn the_fault_api_gets_the_token_as_a_bearer_when_there_is_one() {
        let http = http_client().unwrap();
        assert_eq!(authorization(&LlmClient::new(http.clone())), None);
        let empty = LlmClient::new(http.clone()).with_token(Some("".parse().unwrap()));
        assert_eq!(authorization(&empty), None);
        let guarded = LlmClient::new(http).with_token(Some("s3cret".parse().unwrap()));
        assert_eq!(authorization(&guarded).as_deref(), Some("Bearer s3cret"));
        assert!(!format!("{guarded:?}").contains("s3cret"));
    }
}
