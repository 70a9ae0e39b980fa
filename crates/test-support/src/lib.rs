//! One way for every end-to-end suite to start the workspace's real binaries: each on a
//! free port (or a port the test chose), with its output kept for failure messages,
//! waited for until it is healthy (always with a deadline, never a fixed sleep), and
//! killed when its handle drops. Each test stack gets its own private `redis-server`
//! ([`RedisServer`]), never the shared one on 6379.
//!
//! ```ignore
//! let redis = RedisServer::start().await;
//! let a = LlmService::builder().registry(&redis.url(), 3000).start().await;
//! let gw = Gateway::builder().upstreams(&[&a]).redis(&redis.url()).start().await;
//! ```
//!
//! - [`LlmService`] and [`Gateway`]: the two services, with test-friendly defaults.
//! - [`Process`]: any other command (a `chaos-monkey proxy`, a binary with exactly the
//!   environment a deployment file gives it), started the same way.
//! - [`binary`]: a binary built in the same target directory as the running test.
//!
//! Only starting, stopping, ports, Redis and health waiting live here; each suite keeps
//! the helpers only it uses (its HTTP calls, its traffic) beside its tests.
//!
//! Failures: the internals return [`Error`]; the test-facing calls (`start`, `wait_exit`,
//! …) turn an error into a failed test with the process's last output, through [`fail`],
//! the one place this crate panics.

mod gateway;
pub mod jwt;
mod llm;
mod logs;
pub mod postgres;
mod process;
mod redis_server;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use gateway::{Gateway, GatewayBuilder};
pub use llm::{LlmService, LlmServiceBuilder};
pub use logs::LogSink;
pub use process::{Address, Process};
pub use redis_server::RedisServer;

/// Why a process could not be started, reached or stopped.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Fails the calling test with `error`: the test-facing calls of this crate end here
/// when a process does not start, answer or stop as the test needs.
#[expect(
    clippy::panic,
    reason = "test support: failing the calling test, with the reason, is the job of its test-facing calls"
)]
pub fn fail(error: impl std::fmt::Display) -> ! {
    panic!("{error}")
}

/// A SERVICE_ID (or other name) no other test or test process uses.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| fail(format!("no free loopback port: {e}")))
}

/// A binary of this workspace, from the target directory the running test was built in
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    try_binary(name).unwrap_or_else(|e| fail(e))
}

fn try_binary(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::new(format!("the running test's own path: {e}")))?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::new(format!("{} is not in target/<profile>/deps", exe.display())))?;
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::new(format!(
            "{} does not exist: run `cargo build -p {name}` before these tests",
            path.display()
        )))
    }
}

/// The workspace root: the gateway runs from there, as the README starts it, so it finds
/// `config/`.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// A client that opens a fresh connection per request (as `curl` does), so that no idle
/// keep-alive connection outlives a process restart or a graceful shutdown.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap_or_else(|e| fail(format!("the HTTP client: {e}")))
}

/// What [`poll`] saw last.
#[derive(Debug)]
pub struct Polled<T> {
    /// The last value probed.
    pub value: T,
    /// Whether `done` accepted it before the deadline.
    pub ok: bool,
    /// Time from the first probe to the last.
    pub took: Duration,
}

/// Calls `probe` every 20 ms until `done` accepts its value or `limit` passes.
pub async fn poll<T, F, Fut>(limit: Duration, mut probe: F, done: impl Fn(&T) -> bool) -> Polled<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let start = Instant::now();
    loop {
        let value = probe().await;
        let ok = done(&value);
        if ok || start.elapsed() >= limit {
            return Polled {
                value,
                ok,
                took: start.elapsed(),
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
