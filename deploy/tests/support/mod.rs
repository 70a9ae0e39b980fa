//! Starts the workspace's real binaries for the deployment checks through the workspace's
//! one test harness (`test-support`, crates/test-support), with exactly the environment a
//! deployment file gives them, and reads the deployment files.
#![allow(dead_code, reason = "each test binary uses part of the support")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
pub use test_support::{Address, Process, RedisServer, binary, free_port, poll};
use tokio::process::Command;

/// The workspace root, where the deployment files live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploy/ sits in the workspace")
        .to_path_buf()
}

/// A deployment file's text.
pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file (one document) as JSON values.
pub fn yaml(relative: &str) -> Value {
    yaml_serde::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The environment variables `binary --help` lists, and RUST_LOG (read by the logger).
pub async fn known_env(binary_name: &str) -> std::collections::BTreeSet<String> {
    let output = Command::new(binary(binary_name))
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{binary_name} --help failed");
    let mut names = deploy_check::binaries::env_names(&String::from_utf8_lossy(&output.stdout));
    names.insert("RUST_LOG".to_owned());
    names
}

/// A running service, killed when dropped.
pub struct Service {
    pub process: Process,
    pub port: u16,
}

impl Service {
    /// Starts `binary` listening on a free loopback port with `env`, and waits until
    /// `ready_path` answers 2xx.
    pub async fn start(binary_name: &str, env: &[(&str, &str)], ready_path: &str) -> Self {
        Self::start_on(free_port(), binary_name, env, ready_path).await
    }

    /// [`Service::start`] on `port`, with exactly `env` (and PORT, HOST, RUST_LOG).
    pub async fn start_on(
        port: u16,
        binary_name: &str,
        env: &[(&str, &str)],
        ready_path: &str,
    ) -> Self {
        let mut command = Command::new(binary(binary_name));
        command
            .current_dir(root())
            .env_clear()
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("RUST_LOG", "warn")
            // The gateway's history in memory, unless a test says otherwise: nothing written
            // into the repository.
            .env("DATABASE_URL", "sqlite::memory:")
            .envs(env.iter().copied());
        let process =
            Process::start(binary_name, command, Address::Port(port), Some(ready_path)).await;
        Self { process, port }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.url())
    }
}

/// A `redis-server` of this test alone on a free loopback port (never the shared 6379),
/// nothing saved; killed when dropped. Its URL.
pub async fn private_redis() -> (RedisServer, String) {
    let redis = RedisServer::start().await;
    let url = redis.url();
    (redis, url)
}

/// An llm-service that answers at once and never fails on its own.
pub async fn calm_llm_service() -> Service {
    Service::start(
        "llm-service",
        &[
            ("SERVICE_ID", "deploy_check_llm"),
            ("SIM_MIN_LATENCY_MS", "0"),
            ("SIM_MAX_LATENCY_MS", "0"),
            ("SIM_FAILURE_RATE", "0"),
            // The metrics test puts a fault in place through the fault API.
            ("CHAOS_ENABLED", "true"),
        ],
        "/health",
    )
    .await
}

/// A gateway in front of `llm`, with no Redis, plus `env`.
pub async fn gateway_for(llm: &Service, env: &[(&str, &str)]) -> Service {
    let upstream = llm.url("");
    let mut all = vec![
        ("LLM_SERVICE_URLS", upstream.as_str()),
        ("HEALTH_CHECK_INTERVAL_MS", "500"),
    ];
    all.extend_from_slice(env);
    Service::start("gateway", &all, "/ready").await
}

/// `POST url` with a JSON body; the answer, whatever its status.
pub async fn post(url: String, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Polls `check` for up to 20 s; fails the test naming `what`.
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let polled = poll(Duration::from_secs(20), check, |done| *done).await;
    assert!(polled.ok, "timed out waiting until {what}");
}

/// Runs `argv` (its program replaced by the one built here when it names one of ours)
/// with exactly `env`; its exit status.
pub async fn run_argv(argv: &[String], env: &BTreeMap<String, String>) -> std::process::ExitStatus {
    let program = Path::new(&argv[0])
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a program");
    Command::new(binary(program))
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap()
}
