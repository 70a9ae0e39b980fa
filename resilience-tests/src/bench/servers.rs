//! The servers the bench starts: each a child process in its own process group, its
//! output in a log file of the work dir, waited for until it answers (HTTP, or a Redis
//! `PING`), and stopped — with its whole group — when its guard is dropped, on every exit
//! path of the run.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::procfs::{self, Usage};

/// How long a server may take to answer after it was started.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a server may take to exit after its stop signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a server's log shown when it failed to start.
const LOG_TAIL_LINES: usize = 20;

/// A free port on 127.0.0.1: bound to port 0, read, released.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot bind a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Refuses a URL whose host is not 127.0.0.1: the bench only loads its own servers.
pub fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next());
    anyhow::ensure!(
        host == Some("127.0.0.1"),
        "refusing {url}: the bench only sends traffic to 127.0.0.1"
    );
    Ok(())
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How a server shows it is ready, and the scheme of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// `GET path` answers 2xx (`http://`).
    Http(&'static str),
    /// `PING` answers `+PONG` (`redis://`).
    RedisPing,
}

impl Ready {
    /// The server's URL on 127.0.0.1:`port`.
    pub fn url(self, port: u16) -> String {
        match self {
            Self::Http(_) => format!("http://127.0.0.1:{port}"),
            Self::RedisPing => format!("redis://127.0.0.1:{port}"),
        }
    }
}

/// Whether the Redis on 127.0.0.1:`port` answers `PING` with `+PONG` now; the error says
/// what it did instead.
pub async fn redis_ping(port: u16) -> Result<(), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Ok(Ok(reply)) if reply.starts_with("+PONG") => Ok(()),
        Ok(Ok(reply)) => Err(format!("PING answered {:?}", reply.trim_end())),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("PING timed out".to_owned()),
    }
}

/// How to start one server.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its name in the report and in its files' names.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment, over the bench's own less `env_remove`.
    pub env: Vec<(String, String)>,
    /// Variables of the bench's environment it must not inherit.
    pub env_remove: Vec<&'static str>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// How it shows it is ready.
    pub ready: Ready,
    /// The signal that stops it gracefully (`QUIT` for nginx, `TERM` for the services).
    pub stop_signal: &'static str,
    /// Other log files it writes (nginx's error log).
    pub extra_logs: Vec<PathBuf>,
}

/// A running server; stopped (with its process group) when dropped.
#[derive(Debug)]
pub struct Server {
    /// Its name.
    pub name: String,
    /// `http://127.0.0.1:PORT` (`redis://` for a Redis).
    pub url: String,
    /// Its port.
    pub port: u16,
    /// The main process (nginx's master), also its process group.
    pub pid: u32,
    child: Child,
    stop_signal: &'static str,
    logs: Vec<PathBuf>,
    seen: Mutex<BTreeSet<u32>>,
}

impl Server {
    /// Starts `spec` in `dir` (its output in `dir/<name>.log`) and waits until it is
    /// ready, at most [`START_DEADLINE`].
    pub async fn start(spec: Spec, dir: &Path, http: &reqwest::Client) -> anyhow::Result<Self> {
        let url = spec.ready.url(spec.port);
        let log_path = dir.join(format!("{}.log", spec.name));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        for name in &spec.env_remove {
            command.env_remove(name);
        }
        command.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} ({})", spec.name, spec.program.display()))?;
        let mut logs = vec![log_path];
        logs.extend(spec.extra_logs);
        let mut server = Self {
            name: spec.name,
            url,
            port: spec.port,
            pid: child.id(),
            child,
            stop_signal: spec.stop_signal,
            logs,
            seen: Mutex::new(BTreeSet::new()),
        };
        server.wait_ready(spec.ready, http).await?;
        Ok(server)
    }

    /// Whether it is ready now; the error says what it answered instead.
    async fn probe(&self, ready: Ready, http: &reqwest::Client) -> Result<(), String> {
        match ready {
            Ready::Http(path) => {
                let url = format!("{}{path}", self.url);
                match http.get(&url).timeout(PROBE_TIMEOUT).send().await {
                    Ok(answer) if answer.status().is_success() => Ok(()),
                    Ok(answer) => Err(format!("{url}: HTTP {}", answer.status())),
                    Err(error) => Err(format!("{url}: {error}")),
                }
            }
            Ready::RedisPing => redis_ping(self.port).await,
        }
    }

    /// Probes it until it is ready; fails with the log's tail when the process exits or
    /// the deadline passes.
    async fn wait_ready(&mut self, ready: Ready, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!(
                    "{} exited while starting ({status}); its log ends with:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let Err(last) = self.probe(ready, http).await else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} was not ready within {} s (last: {last}); its log ends with:\n{}",
                    self.name,
                    START_DEADLINE.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of each of its logs.
    pub fn log_tail(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("--- {}\n{}", path.display(), tail(&text, LOG_TAIL_LINES))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Its CPU time and memory now (main process and children); `None` once it is gone.
    pub fn usage(&self) -> Option<Usage> {
        let usage = procfs::sample(self.pid)?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.extend(usage.pids.iter().copied());
        }
        Some(usage)
    }

    /// Every process id counted for it so far (nginx's workers too).
    pub fn pids_seen(&self) -> Vec<u32> {
        let mut pids: BTreeSet<u32> = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        pids.insert(self.pid);
        pids.into_iter().collect()
    }

    /// Stops it: the graceful signal to the main process, then, after [`STOP_GRACE`],
    /// SIGKILL to its whole process group; waits for it, then kills whatever of its group
    /// is left (an nginx worker never outlives its master here).
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.stop_signal, &self.pid.to_string());
            let deadline = Instant::now() + STOP_GRACE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                signal("KILL", &format!("-{}", self.pid));
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        signal("KILL", &format!("-{}", self.pid));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kill -<signal> -- <target>` (a pid, or `-pgid` for a group), quietly: the target may
/// be gone already.
fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
