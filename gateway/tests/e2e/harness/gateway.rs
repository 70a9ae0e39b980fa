//! The `gateway` starter and its HTTP helpers: `/generate`, `/health`, `/metrics`,
//! `/admin/*`, `/ready`, signals and memory.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{
    LlmService, LogSink, MAX_TOKENS, await_listening, capture, client, prometheus_sum, send_kill,
    workspace_root,
};

/// How to start the gateway.
pub struct GatewayBuilder {
    env: Vec<(String, String)>,
}

/// A running gateway; killed when dropped.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    logs: LogSink,
    client: reqwest::Client,
}

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

impl Gateway {
    /// Defaults scaled down for tests; override with the builder's methods.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            env: vec![
                ("PORT".into(), "0".into()),
                ("HOST".into(), "127.0.0.1".into()),
                ("CIRCUIT_BREAKER_FAILURE_THRESHOLD".into(), "3".into()),
                ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT".into(), "2".into()),
                ("MAX_CONCURRENT_REQUESTS".into(), "100".into()),
                ("REQUEST_TIMEOUT".into(), "5".into()),
                ("HEALTH_CHECK_INTERVAL_MS".into(), "200".into()),
                ("DISCOVERY_REFRESH_MS".into(), "200".into()),
                ("PER_TRY_TIMEOUT_MS".into(), "500".into()),
                ("LOG_FORMAT".into(), "pretty".into()),
                ("RUST_LOG".into(), "info".into()),
                ("DRAIN_TIMEOUT_MS".into(), "5000".into()),
            ],
        }
    }
}

impl GatewayBuilder {
    /// Sets an environment variable of the gateway.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// `LLM_SERVICE_URLS`: the static list.
    pub fn upstreams(self, services: &[&LlmService]) -> Self {
        let urls: Vec<&str> = services.iter().map(|s| s.url.as_str()).collect();
        self.env("LLM_SERVICE_URLS", urls.join(","))
    }

    /// Pool breaker: `CIRCUIT_BREAKER_FAILURE_THRESHOLD` and `…_RECOVERY_TIMEOUT` (s).
    pub fn breaker(self, threshold: u32, recovery_s: u64) -> Self {
        self.env("CIRCUIT_BREAKER_FAILURE_THRESHOLD", threshold)
            .env("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", recovery_s)
    }

    /// `MAX_CONCURRENT_REQUESTS`.
    pub fn max_concurrent(self, n: u32) -> Self {
        self.env("MAX_CONCURRENT_REQUESTS", n)
    }

    /// `PER_TRY_TIMEOUT_MS`.
    pub fn per_try_timeout_ms(self, ms: u64) -> Self {
        self.env("PER_TRY_TIMEOUT_MS", ms)
    }

    /// `REDIS_URL`.
    pub fn redis(self, url: &str) -> Self {
        self.env("REDIS_URL", url)
    }

    /// `GATEWAY_CONFIG`: a TOML file with `toml` as its content.
    pub fn config(self, toml: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.toml", super::unique_id("e2e-gateway")));
        std::fs::write(&path, toml).expect("the config file is written");
        self.env("GATEWAY_CONFIG", path.display())
    }

    /// Starts the binary, waits for its `listening` line, then until `/ready` answers 200.
    pub async fn start(self) -> Gateway {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        command
            .current_dir(workspace_root())
            .env_remove("REDIS_URL")
            .env_remove("POSTGRES_URL")
            .env_remove("DATABASE_URL")
            .env_remove("LLM_SERVICE_URLS")
            .env_remove("HEALTH_CHECK_PATH")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the gateway binary starts");
        let logs = LogSink::default();
        let rx = capture(&mut child, &logs);
        let url = await_listening("gateway", rx, &logs, &mut child).await;
        let mut gateway = Gateway {
            child,
            url,
            logs,
            client: client(),
        };
        gateway.wait_ready().await;
        gateway
    }
}

impl Gateway {
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the gateway exited ({status}) before /ready answered 200; its output:\n{}",
                    self.logs.tail(40)
                );
            }
            last = self.ready_status().await;
            if last == Some(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the gateway's /ready did not answer 200 within 20 s (last: {last:?}); its output:\n{}",
            self.logs.tail(40)
        );
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the gateway is running")
    }

    /// Everything it logged (stdout and stderr).
    pub fn logs(&self) -> &LogSink {
        &self.logs
    }

    /// A clone of its HTTP client (fresh connection per request).
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// `POST /generate {"prompt", "max_tokens": 16}`.
    pub async fn generate(&self, prompt: &str) -> Answer {
        self.generate_body(json!({"prompt": prompt, "max_tokens": MAX_TOKENS}), None)
            .await
    }

    /// `POST /generate` with an `x-request-id` header.
    pub async fn generate_with_id(&self, prompt: &str, request_id: &str) -> Answer {
        self.generate_body(
            json!({"prompt": prompt, "max_tokens": MAX_TOKENS}),
            Some(request_id),
        )
        .await
    }

    /// `POST /generate` with any JSON body.
    pub async fn generate_body(&self, body: Value, request_id: Option<&str>) -> Answer {
        generate_on(&self.client, &self.url, body, request_id)
            .await
            .unwrap_or_else(|e| panic!("POST /generate was not answered: {e}"))
    }

    /// `POST /generate` with a raw body and content type.
    pub async fn post_raw(&self, content_type: &str, body: impl Into<String>) -> Answer {
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}/generate", self.url))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .expect("POST /generate is answered");
        read_answer(response, started).await.unwrap()
    }

    /// `GET path` as an [`Answer`].
    pub async fn get(&self, path: &str, accept: &str) -> Answer {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .header("accept", accept)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} was not answered: {e}"));
        read_answer(response, started).await.unwrap()
    }

    /// `GET /health`: status and JSON.
    pub async fn health(&self) -> (u16, Value) {
        let answer = self.get("/health", "application/json").await;
        (answer.status, answer.body)
    }

    /// `service_discovery.available_services` (`None` when absent or not an integer).
    pub async fn available_services(&self) -> Option<u64> {
        self.health().await.1["service_discovery"]["available_services"].as_u64()
    }

    /// `GET /metrics` with `Accept: application/json`.
    pub async fn metrics_json(&self) -> Value {
        self.get("/metrics", "application/json").await.body
    }

    /// `circuit_breaker.state` of `/metrics` JSON ("" when absent).
    pub async fn breaker_state(&self) -> String {
        self.metrics_json().await["circuit_breaker"]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// `GET /metrics` with `Accept: text/plain`: content type and text.
    pub async fn metrics_text(&self) -> (String, String) {
        let answer = self.get("/metrics", "text/plain").await;
        let content_type = answer.header("content-type").unwrap_or_default();
        let text = match answer.body {
            Value::String(text) => text,
            other => other.to_string(),
        };
        (content_type, text)
    }

    /// Sum of `llm_errors_total` samples labelled with `service`'s id or address.
    pub async fn errors_of(&self, service: &LlmService) -> f64 {
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

    /// `GET /admin/status`.
    pub async fn admin_status(&self) -> Value {
        self.get("/admin/status", "application/json").await.body
    }

    /// `POST /admin/reset-circuit-breaker`; its status.
    pub async fn reset_breaker(&self) -> u16 {
        self.client
            .post(format!("{}/admin/reset-circuit-breaker", self.url))
            .send()
            .await
            .expect("the reset is answered")
            .status()
            .as_u16()
    }

    /// `GET /ready`'s status; `None` when the connection fails (refused, reset).
    pub async fn ready_status(&self) -> Option<u16> {
        let response = self
            .client
            .get(format!("{}/ready", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        send_kill("-TERM", self.pid()).await;
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait works"),
            Err(_) => panic!(
                "the gateway did not exit within {limit:?}; its output:\n{}",
                self.logs.tail(30)
            ),
        }
    }

    /// Resident memory (`VmRSS` of `/proc/<pid>/status`) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
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

impl Gateway {
    /// `POST /v1/chat/completions` with `body`.
    pub async fn chat(&self, body: Value) -> Answer {
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}/v1/chat/completions", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST /v1/chat/completions is answered");
        read_answer(response, started).await.unwrap()
    }

    /// `POST /v1/chat/completions` with `body` (which should ask for a stream), read event
    /// by event to the end.
    pub async fn chat_stream(&self, body: Value) -> Streamed {
        let started = Instant::now();
        let mut response = self
            .client
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
