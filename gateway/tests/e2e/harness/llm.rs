//! The `llm-service` starter: instant, never-failing defaults, faults through its API,
//! `kill -9` and a restart on the same port.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::{
    LogSink, await_listening, capture, client, llm_service_binary, prometheus_sum, send_kill,
    unique_id,
};

/// How to start one llm-service.
pub struct LlmServiceBuilder {
    env: Vec<(String, String)>,
    service_id: String,
}

/// A running llm-service; killed when dropped.
pub struct LlmService {
    child: Option<Child>,
    env: Vec<(String, String)>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its port (kept across [`LlmService::restart_on_same_port`]).
    pub port: u16,
    /// Its SERVICE_ID.
    pub service_id: String,
    logs: LogSink,
    client: reqwest::Client,
}

impl LlmService {
    /// Instant, never-failing defaults; override with the builder's methods.
    pub fn builder() -> LlmServiceBuilder {
        let service_id = unique_id("e2e-llm");
        LlmServiceBuilder {
            env: vec![
                ("PORT".into(), "0".into()),
                ("HOST".into(), "127.0.0.1".into()),
                ("SERVICE_ID".into(), service_id.clone()),
                ("SIM_MIN_LATENCY_MS".into(), "0".into()),
                ("SIM_MAX_LATENCY_MS".into(), "0".into()),
                ("SIM_FAILURE_RATE".into(), "0".into()),
                ("SIM_TOKEN_INTERVAL_MS".into(), "1".into()),
                ("LOG_FORMAT".into(), "pretty".into()),
                ("RUST_LOG".into(), "info".into()),
                ("DRAIN_TIMEOUT_MS".into(), "2000".into()),
            ],
            service_id,
        }
    }
}

impl LlmServiceBuilder {
    /// Sets an environment variable of the service.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_string()));
        if key == "SERVICE_ID" {
            self.service_id = value.to_string();
        }
        self
    }

    /// Simulated latency range in milliseconds.
    pub fn latency(self, min_ms: u64, max_ms: u64) -> Self {
        self.env("SIM_MIN_LATENCY_MS", min_ms)
            .env("SIM_MAX_LATENCY_MS", max_ms)
    }

    /// Registers in the Redis at `redis_url` with a TTL of `ttl_ms`.
    pub fn registry(self, redis_url: &str, ttl_ms: u64) -> Self {
        self.env("REDIS_URL", redis_url)
            .env("REGISTRY_TTL_MS", ttl_ms)
    }

    /// Starts the binary and waits until it listens.
    pub async fn start(self) -> LlmService {
        let (child, url, logs) = spawn_llm(&self.env).await;
        let port = port_of(&url);
        LlmService {
            child: Some(child),
            env: self.env,
            url,
            port,
            service_id: self.service_id,
            logs,
            client: client(),
        }
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

async fn spawn_llm(env: &[(String, String)]) -> (Child, String, LogSink) {
    let mut command = Command::new(llm_service_binary());
    command
        .env_remove("REDIS_URL")
        .env_remove("CHAOS_TOKEN")
        .env_remove("ADVERTISE_URL")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the llm-service binary starts");
    let logs = LogSink::default();
    let rx = capture(&mut child, &logs);
    let url = await_listening("llm-service", rx, &logs, &mut child).await;
    (child, url, logs)
}

impl LlmService {
    /// Whether the gateway's `served_by` names this instance (its SERVICE_ID, or its
    /// address for a gateway that only knows the static URL).
    pub fn is(&self, served_by: &str) -> bool {
        let served_by = served_by.trim_end_matches('/');
        served_by == self.service_id
            || served_by == self.url
            || served_by == format!("127.0.0.1:{}", self.port)
            || served_by == format!("localhost:{}", self.port)
    }

    /// Injects a fault through `POST /chaos/faults`; returns its id.
    pub async fn add_fault(&self, spec: Value) -> String {
        let response = self
            .client
            .post(format!("{}/chaos/faults", self.url))
            .json(&spec)
            .send()
            .await
            .expect("the fault API answers");
        assert_eq!(
            response.status(),
            201,
            "fault {spec} accepted; llm-service output:\n{}",
            self.logs.tail(10)
        );
        let body: Value = response.json().await.unwrap();
        body["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| body["id"].as_u64().map(|id| id.to_string()))
            .expect("the fault has an id")
    }

    /// Removes every fault (`DELETE /chaos/faults`).
    pub async fn clear_faults(&self) {
        let response = self
            .client
            .delete(format!("{}/chaos/faults", self.url))
            .send()
            .await
            .expect("the fault API answers");
        assert!(response.status().is_success(), "faults cleared");
    }

    /// How many `/generate` requests it has answered (any status), from its `/metrics`.
    pub async fn generate_count(&self) -> f64 {
        let text = self.metrics_text().await;
        prometheus_sum(&text, "http_requests_total", &["endpoint=\"generate\""])
    }

    /// How many `/v1/chat/completions` requests it has answered (streams once they ended).
    pub async fn chat_count(&self) -> f64 {
        let text = self.metrics_text().await;
        prometheus_sum(
            &text,
            "http_requests_total",
            &["endpoint=\"chat_completions\""],
        )
    }

    /// Its `/metrics` in Prometheus text.
    async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .header("accept", "text/plain")
            .send()
            .await
            .expect("llm-service /metrics answers")
            .text()
            .await
            .unwrap()
    }

    /// Requests it is answering now (`http_requests_in_flight`).
    pub async fn in_flight(&self) -> f64 {
        let text = self.metrics_text().await;
        prometheus_sum(&text, "http_requests_in_flight", &[])
    }

    /// Kills it with SIGKILL and reaps it.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                send_kill("-KILL", pid).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .expect("a killed llm-service exits");
        }
    }

    /// Starts it again with the same settings on the same port.
    pub async fn restart_on_same_port(&mut self) {
        assert!(self.child.is_none(), "restart after kill9 only");
        let mut env = self.env.clone();
        env.retain(|(k, _)| k != "PORT");
        env.push(("PORT".into(), self.port.to_string()));
        let (child, url, logs) = spawn_llm(&env).await;
        assert_eq!(url, self.url, "restarted on the same address");
        self.child = Some(child);
        self.logs = logs;
    }
}
