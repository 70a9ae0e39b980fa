//! Starts the workspace's real binaries on free ports for the deployment checks, and reads
//! the deployment files.
#![allow(dead_code, reason = "each test binary uses part of the support")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

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

/// A binary built in this target directory (`cargo build --workspace` builds them all).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace` first",
        path.display()
    );
    path
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

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running service, killed when dropped.
pub struct Service {
    pub child: Child,
    pub port: u16,
}

impl Service {
    /// Starts `binary` listening on a free loopback port with `env`, and waits until
    /// `ready_path` answers 2xx.
    pub async fn start(binary_name: &str, env: &[(&str, &str)], ready_path: &str) -> Self {
        Self::start_on(free_port(), binary_name, env, ready_path).await
    }

    /// [`Service::start`] on `port`.
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap();
        let service = Self { child, port };
        let url = service.url(ready_path);
        wait_until(&format!("{binary_name} answers {url}"), || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        service
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A `redis-server` of this test alone on a free loopback port (never the shared 6379),
/// nothing saved; killed when dropped. Its URL.
pub async fn private_redis() -> (Child, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed");
    let url = format!("redis://127.0.0.1:{port}");
    wait_until("the private redis-server listens", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    (child, url)
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

/// Polls `check` every 50 ms for up to 20 s; fails the test naming `what`.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
