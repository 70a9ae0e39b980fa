//! Starts the real `llm-service` binary on a free port and talks to it.
//!
//! ```ignore
//! let llm = LlmService::builder().latency(0, 0).start().await;
//! let answer = llm.post_json("/generate", json!({"prompt": "hi"})).await;
//! ```

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// The local Redis the registry tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A SERVICE_ID no other test (or test process) uses.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    )
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// How to start one instance.
pub struct Builder {
    env: Vec<(String, String)>,
    service_id: String,
}

/// A running instance; killed when dropped.
pub struct LlmService {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its SERVICE_ID.
    pub service_id: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// A client with no connection reuse surprises: fresh pool per instance.
    pub client: reqwest::Client,
}

impl LlmService {
    /// Instant, never-failing defaults; override with the builder's methods.
    pub fn builder() -> Builder {
        let service_id = unique_id("e2e");
        Builder {
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
                ("DRAIN_TIMEOUT_MS".into(), "5000".into()),
            ],
            service_id,
        }
    }
}

impl Builder {
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

    /// Registers in the local Redis with a short TTL.
    pub fn redis(self, ttl_ms: u64) -> Self {
        self.env("REDIS_URL", redis_url())
            .env("REGISTRY_TTL_MS", ttl_ms)
    }

    /// Starts the binary and waits until it listens.
    pub async fn start(self) -> LlmService {
        let mut command = Command::new(env!("CARGO_BIN_EXE_llm-service"));
        command
            .env_remove("REDIS_URL")
            .env_remove("CHAOS_TOKEN")
            .env_remove("ADVERTISE_URL")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the llm-service binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (found_tx, found_rx) = oneshot::channel();
        let sink = Arc::clone(&logs);
        tokio::spawn(async move {
            let mut found_tx = Some(found_tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening")
                    && let Some(url) = listening_url(&line)
                    && let Some(tx) = found_tx.take()
                {
                    let _ = tx.send(url);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = tokio::time::timeout(Duration::from_secs(20), found_rx)
            .await
            .expect("llm-service printed its address within 20 s")
            .expect("llm-service printed its address before exiting");
        LlmService {
            child,
            url,
            service_id: self.service_id,
            logs,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }
}

/// `... listening addr=127.0.0.1:PORT url=http://127.0.0.1:PORT ...` → the url.
fn listening_url(line: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("url="))
        .map(str::to_owned)
}

impl LlmService {
    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("the request is answered")
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the request is answered")
    }

    /// `GET path` as JSON, with its status.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// Injects a fault; returns its id.
    pub async fn add_fault(&self, spec: Value) -> String {
        let response = self.post_json("/chaos/faults", spec.clone()).await;
        assert_eq!(response.status(), 201, "fault {spec} accepted");
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().expect("the fault has an id").to_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the process exited in time")
            .expect("wait works")
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
