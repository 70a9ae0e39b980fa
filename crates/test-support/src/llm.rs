//! The `llm-service` starter: instant, never-failing defaults, a free port, waited for
//! until `/live` answers; `kill -9` and a restart on the same port; its fault API, which
//! several suites drive (on by default here, `CHAOS_ENABLED=true`; see
//! [`LlmServiceBuilder::without_chaos`]).

use std::ops::{Deref, DerefMut};

use serde_json::Value;
use tokio::process::Command;

use crate::process::{Address, Process};
use crate::{Error, binary, client, fail, unique_id};

/// How to start one llm-service.
pub struct LlmServiceBuilder {
    env: Vec<(String, String)>,
    service_id: String,
}

/// A running llm-service; killed when dropped. Its process calls ([`Process::pid`],
/// [`Process::terminate`], [`Process::wait_exit`], [`Process::logs`], …) come through
/// `Deref`.
pub struct LlmService {
    process: Process,
    env: Vec<(String, String)>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its port (kept across [`LlmService::restart_on_same_port`]).
    pub port: u16,
    /// Its SERVICE_ID.
    pub service_id: String,
    /// A client that opens a fresh connection per request.
    pub client: reqwest::Client,
}

impl LlmService {
    /// Instant, never-failing defaults with the fault API on; override with the builder's
    /// methods.
    pub fn builder() -> LlmServiceBuilder {
        let service_id = unique_id("e2e-llm");
        LlmServiceBuilder {
            env: [
                ("PORT", "0"),
                ("HOST", "127.0.0.1"),
                ("SERVICE_ID", service_id.as_str()),
                ("SIM_MIN_LATENCY_MS", "0"),
                ("SIM_MAX_LATENCY_MS", "0"),
                ("SIM_FAILURE_RATE", "0"),
                ("SIM_TOKEN_INTERVAL_MS", "1"),
                ("LOG_FORMAT", "pretty"),
                ("RUST_LOG", "info"),
                ("DRAIN_TIMEOUT_MS", "5000"),
                ("CHAOS_ENABLED", "true"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
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

    /// Starts it with the fault API off (the service's own default): every `/chaos` route
    /// refuses.
    pub fn without_chaos(self) -> Self {
        self.env("CHAOS_ENABLED", "false")
    }

    /// Guards the fault API with `token` (`CHAOS_TOKEN`); [`LlmService::add_fault`] and
    /// [`LlmService::clear_faults`] send it as `Authorization: Bearer`.
    pub fn chaos_token(self, token: &str) -> Self {
        self.env("CHAOS_TOKEN", token)
    }

    /// Registers in the Redis at `redis_url` with a TTL of `ttl_ms`.
    pub fn registry(self, redis_url: &str, ttl_ms: u64) -> Self {
        self.env("REDIS_URL", redis_url)
            .env("REGISTRY_TTL_MS", ttl_ms)
    }

    /// Starts the binary and waits until it listens and `/live` answers.
    pub async fn start(self) -> LlmService {
        let process = spawn(&self.env).await.unwrap_or_else(|e| fail(e));
        LlmService {
            url: process.url().to_owned(),
            port: process.port(),
            process,
            env: self.env,
            service_id: self.service_id,
            client: client(),
        }
    }
}

async fn spawn(env: &[(String, String)]) -> Result<Process, Error> {
    let mut command = Command::new(binary("llm-service"));
    command
        .env_remove("REDIS_URL")
        .env_remove("CHAOS_TOKEN")
        .env_remove("CHAOS_ENABLED")
        .env_remove("ADVERTISE_URL")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Process::try_start("llm-service", command, Address::FromLog, Some("/live")).await
}

impl LlmService {
    /// Starts it again, after [`Process::kill9`], with the same settings on the same port.
    pub async fn restart_on_same_port(&mut self) {
        if self.process.is_started() {
            fail("restart_on_same_port after kill9 only");
        }
        let mut env = self.env.clone();
        env.retain(|(k, _)| k != "PORT");
        env.push(("PORT".into(), self.port.to_string()));
        let process = spawn(&env).await.unwrap_or_else(|e| fail(e));
        if process.url() != self.url {
            fail(format!(
                "restarted on {}, not on {}",
                process.url(),
                self.url
            ));
        }
        self.process = process;
    }

    /// A request to its fault API, with its `CHAOS_TOKEN` as a bearer token when it has one.
    fn chaos_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.url));
        match self
            .env
            .iter()
            .find(|(k, v)| k == "CHAOS_TOKEN" && !v.is_empty())
        {
            Some((_, token)) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Injects a fault through `POST /chaos/faults`; returns its id.
    pub async fn add_fault(&self, spec: Value) -> String {
        let response = self
            .chaos_request(reqwest::Method::POST, "/chaos/faults")
            .json(&spec)
            .send()
            .await
            .unwrap_or_else(|e| fail(format!("the fault API does not answer: {e}")));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 201 {
            fail(format!(
                "fault {spec} not accepted ({status}: {body}); llm-service output:\n{}",
                self.logs().tail(10)
            ));
        }
        body["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| body["id"].as_u64().map(|id| id.to_string()))
            .unwrap_or_else(|| fail(format!("the fault has no id: {body}")))
    }

    /// Removes every fault (`DELETE /chaos/faults`).
    pub async fn clear_faults(&self) {
        let response = self
            .chaos_request(reqwest::Method::DELETE, "/chaos/faults")
            .send()
            .await
            .unwrap_or_else(|e| fail(format!("the fault API does not answer: {e}")));
        if !response.status().is_success() {
            fail(format!("faults not cleared: {}", response.status()));
        }
    }
}

impl Deref for LlmService {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for LlmService {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}
