//! Starts the real `gateway`, `llm-service` and `redis-server` processes on free ports and
//! talks to them over HTTP only, so these tests compile against nothing but the binaries.
//!
//! ```ignore
//! let a = LlmService::builder().start().await;
//! let b = LlmService::builder().start().await;
//! let gw = Gateway::builder().upstreams(&[&a, &b]).breaker(3, 2).start().await;
//! let answer = gw.generate("hi").await;
//! assert_eq!(answer.data()["fallback_used"], false);
//! ```
//!
//! Every process is killed when its handle drops. Addresses come from the `listening` log
//! line (`url=http://127.0.0.1:PORT`); nothing uses a fixed port. Waiting is polling with a
//! deadline ([`poll`]), never a fixed sleep.

mod gateway;
mod llm;
mod redis_server;
mod traffic;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

pub use gateway::{Answer, Gateway, generate_on};
pub use llm::LlmService;
pub use redis_server::RedisServer;
pub use traffic::Traffic;

/// The prompt-independent `max_tokens` every helper request asks for.
pub(crate) const MAX_TOKENS: u64 = 16;

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

/// The `llm-service` executable built beside `gateway` in the shared target directory.
pub fn llm_service_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("llm-service");
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build -p llm-service` before these tests",
        path.display()
    );
    path
}

/// The workspace root: the gateway runs from there, as the README starts it, so it finds
/// `config/` (seeded fallback answers).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace")
        .to_path_buf()
}

/// A client that opens a fresh connection per request (as `curl` does), so that no idle
/// keep-alive connection outlives a process restart or a graceful shutdown.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// Logs

/// Every line a child printed on stdout and stderr, ANSI colours removed.
#[derive(Clone, Default)]
pub struct LogSink(Arc<Mutex<Vec<String>>>);

impl LogSink {
    /// A copy of the lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Log records: a line with a level and the indented lines that continue it.
    pub fn records(&self) -> Vec<String> {
        let mut records: Vec<String> = Vec::new();
        for line in self.lines() {
            let continues = line.starts_with(char::is_whitespace) && !has_level(&line);
            match records.last_mut() {
                Some(last) if continues => {
                    last.push('\n');
                    last.push_str(&line);
                }
                _ => records.push(line),
            }
        }
        records
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

fn has_level(line: &str) -> bool {
    ["TRACE", "DEBUG", " INFO", " WARN", "ERROR", "\"level\""]
        .iter()
        .any(|level| line.contains(level))
}

/// Removes `ESC [ … letter` sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `... listening addr=127.0.0.1:PORT url=http://127.0.0.1:PORT ...` → the url.
fn listening_url(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    line.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .find_map(|word| word.strip_prefix("url="))
        .map(|url| url.trim_end_matches('/').to_owned())
        .filter(|url| url.starts_with("http://"))
}

/// Copies the child's stdout and stderr into `sink`; the receiver gets the listening url,
/// or is dropped when the child closes both streams without printing one.
fn capture(child: &mut Child, sink: &LogSink) -> oneshot::Receiver<String> {
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    fn pump<R: AsyncRead + Unpin + Send + 'static>(
        stream: R,
        sink: LogSink,
        tx: Arc<Mutex<Option<oneshot::Sender<String>>>>,
    ) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                if let Some(url) = listening_url(&line)
                    && let Some(tx) = tx.lock().unwrap().take()
                {
                    let _ = tx.send(url);
                }
                sink.push(line);
            }
        });
    }
    if let Some(stdout) = child.stdout.take() {
        pump(stdout, sink.clone(), Arc::clone(&tx));
    }
    if let Some(stderr) = child.stderr.take() {
        pump(stderr, sink.clone(), tx);
    }
    rx
}

async fn await_listening(
    what: &str,
    rx: oneshot::Receiver<String>,
    sink: &LogSink,
    child: &mut Child,
) -> String {
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(url)) => url,
        Ok(Err(_)) => {
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            panic!(
                "{what} exited before logging `listening … url=…` (exit: {status:?}); its output:\n{}",
                sink.tail(40)
            )
        }
        Err(_) => panic!(
            "{what} logged no `listening … url=…` line within 30 s; its output:\n{}",
            sink.tail(40)
        ),
    }
}

async fn send_kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Sum of the samples of `name` whose line contains every `filter` (Prometheus text).
pub fn prometheus_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| filters.iter().all(|f| line.contains(f)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------
// Polling

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
