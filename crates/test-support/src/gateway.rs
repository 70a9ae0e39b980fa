//! The `gateway` starter: defaults scaled down for tests, a free port, run from the
//! workspace root, waited for until `/ready` answers.

use std::ops::{Deref, DerefMut};

use tokio::process::Command;

use crate::process::{Address, Process};
use crate::{LlmService, binary, client, fail, unique_id, workspace_root};

/// How to start the gateway.
pub struct GatewayBuilder {
    env: Vec<(String, String)>,
}

/// A running gateway; killed when dropped. Its process calls ([`Process::pid`],
/// [`Process::terminate`], [`Process::wait_exit`], [`Process::logs`], …) come through
/// `Deref`.
pub struct Gateway {
    process: Process,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    client: reqwest::Client,
}

impl Gateway {
    /// Defaults scaled down for tests; override with the builder's methods.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            env: [
                ("PORT", "0"),
                ("HOST", "127.0.0.1"),
                ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"),
                ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "2"),
                ("MAX_CONCURRENT_REQUESTS", "100"),
                ("REQUEST_TIMEOUT", "5"),
                ("HEALTH_CHECK_INTERVAL_MS", "200"),
                ("DISCOVERY_REFRESH_MS", "200"),
                ("PER_TRY_TIMEOUT_MS", "500"),
                ("LOG_FORMAT", "pretty"),
                ("RUST_LOG", "info"),
                ("DRAIN_TIMEOUT_MS", "5000"),
                // The history in memory: nothing left behind in the working directory.
                ("DATABASE_URL", "sqlite::memory:"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
        }
    }

    /// A clone of its HTTP client (fresh connection per request).
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
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
        let path = std::env::temp_dir().join(format!("{}.toml", unique_id("e2e-gateway")));
        if let Err(e) = std::fs::write(&path, toml) {
            fail(format!("the config file {}: {e}", path.display()));
        }
        self.env("GATEWAY_CONFIG", path.display())
    }

    /// Starts the binary, waits for its `listening` line, then until `/ready` answers.
    pub async fn start(self) -> Gateway {
        let mut command = Command::new(binary("gateway"));
        command
            .current_dir(workspace_root())
            .env_remove("REDIS_URL")
            .env_remove("POSTGRES_URL")
            .env_remove("DATABASE_URL")
            .env_remove("LLM_SERVICE_URLS")
            .env_remove("HEALTH_CHECK_PATH")
            .env_remove("GATEWAY_CONFIG")
            .env_remove("AUTH_MODE")
            .env_remove("API_KEYS")
            .env_remove("API_KEYS_FILE")
            .env_remove("JWT_SECRET_KEY")
            .env_remove("JWT_PUBLIC_KEY_FILE")
            .env_remove("JWT_JWKS_FILE")
            .env_remove("RATE_LIMIT_STORE")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process = Process::start("gateway", command, Address::FromLog, Some("/ready")).await;
        Gateway {
            url: process.url().to_owned(),
            process,
            client: client(),
        }
    }
}

impl Deref for Gateway {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for Gateway {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}
