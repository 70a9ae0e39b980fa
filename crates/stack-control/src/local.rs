//! The stack as local processes, as `lab up` starts it.
//!
//! The run directory holds everything another process needs to control the stack:
//! - `stack.json`: every service's command, environment, port and health check
//!   ([`StackFile`]), written by `lab up`;
//! - `pids/<name>.pid`: the process of each service the stack started;
//! - `logs/<name>.log`: its standard output and error.
//!
//! Only processes recorded in `pids/` are ever signalled, and only while `/proc/<pid>/exe`
//! is still the service's program (a pid file left by a crash, whose number the system gave
//! to another process since, is stale and removed). A Redis or PostgreSQL the stack did not
//! start is never touched. Services run in their own process group, so they outlive the
//! `lab` command that started them and a Ctrl-C in its terminal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{ControlError, Controller, RunState, ServiceStatus};

/// How long a service may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a service may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long a health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a service without a health endpoint must stay up to count as started.
const ALIVE_FOR: Duration = Duration::from_millis(500);

/// The state file's name in the run directory.
pub const STATE_FILE: &str = "stack.json";

/// How a service shows it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Health {
    /// `GET url` answers 2xx.
    Http {
        /// The URL probed.
        url: String,
    },
    /// `PING` answers `PONG`.
    Redis {
        /// `redis://…`.
        url: String,
    },
    /// The process stays alive.
    Alive,
}

/// One service: how to run it and how to tell it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The compose name.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment, over the inherited one minus [`SCRUBBED_ENV`].
    pub env: BTreeMap<String, String>,
    /// The port it listens on, checked free before it starts.
    pub port: Option<u16>,
    /// Where it answers, for `status`.
    pub url: Option<String>,
    /// Its health check.
    pub health: Health,
}

/// Everything `lab up` started, in start order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFile {
    /// The first port of the stack (the gateway's).
    pub base_port: u16,
    /// The services, in the order they start (and the reverse of the order they stop).
    pub services: Vec<ServiceSpec>,
}

/// Inherited variables removed before a service starts: the stack gives each service the
/// values it needs, and a stray one from the caller's shell must not redirect it.
pub const SCRUBBED_ENV: &[&str] = &[
    "REDIS_URL",
    "POSTGRES_URL",
    "DATABASE_URL",
    "LLM_SERVICE_URLS",
    "GATEWAY_CONFIG",
    "ADVERTISE_URL",
    "SERVICE_ID",
    "MODEL_NAME",
    "PORT",
    "HOST",
    "TARGET_SERVICES",
];

/// The local stack described in a run directory.
#[derive(Debug, Clone)]
pub struct LocalStack {
    dir: PathBuf,
    file: StackFile,
}

impl LocalStack {
    /// The run directory: `$LAB_DIR`, else `./.lab`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("LAB_DIR").map_or_else(|| PathBuf::from(".lab"), PathBuf::from)
    }

    /// The stack described in `dir`; [`ControlError::NoStack`] when `lab up` never ran there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ControlError> {
        let dir = dir.into();
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ControlError::NoStack(format!(
                "cannot read {} ({e}): run `lab up` first",
                path.display()
            ))
        })?;
        let file = serde_json::from_str(&text)
            .map_err(|e| ControlError::NoStack(format!("{}: {e}", path.display())))?;
        Ok(Self { dir, file })
    }

    /// Writes `file` as the stack of `dir` (creating the directory), replacing what was
    /// there; the services keep running.
    pub fn create(dir: impl Into<PathBuf>, file: StackFile) -> Result<Self, ControlError> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("pids"))?;
        std::fs::create_dir_all(dir.join("logs"))?;
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| ControlError::Command(format!("cannot encode the stack: {e}")))?;
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(STATE_FILE))?;
        Ok(Self { dir, file })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stack's description.
    pub fn file(&self) -> &StackFile {
        &self.file
    }

    /// The spec of `name`.
    pub fn spec(&self, name: &str) -> Result<&ServiceSpec, ControlError> {
        self.file
            .services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ControlError::UnknownService(name.to_owned()))
    }

    /// The log file of `service`.
    pub fn log_path(&self, service: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{service}.log"))
    }

    fn pid_path(&self, service: &str) -> PathBuf {
        self.dir.join("pids").join(format!("{service}.pid"))
    }

    /// The process of `service`, if the stack started it and it still runs; a stale pid
    /// file is removed. A pid file names the process by its pid, its start time and the
    /// boot it ran in, so a number the system gave to another process since never matches.
    pub fn pid(&self, service: &str) -> Result<Option<u32>, ControlError> {
        let spec = self.spec(service)?;
        let path = self.pid_path(service);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        match ProcessId::parse(&text) {
            Some(id) if id.is_current() && process_runs(id.pid, &spec.program) => Ok(Some(id.pid)),
            _ => {
                tracing::info!(service, pid_file = text.trim(), "stale pid file removed");
                let _ = std::fs::remove_file(&path);
                Ok(None)
            }
        }
    }

    /// Starts every service that is not running, in order, each healthy before the next;
    /// every port is checked free first, so a conflict fails before anything starts.
    pub async fn up(&self) -> Result<(), ControlError> {
        for spec in &self.file.services {
            if self.pid(&spec.name)?.is_none()
                && let Some(port) = spec.port
                && port_in_use(port)
            {
                return Err(ControlError::PortInUse {
                    service: spec.name.clone(),
                    port,
                });
            }
        }
        for spec in &self.file.services {
            self.start_service(&spec.name).await?;
        }
        Ok(())
    }

    /// Stops every service the stack started, in reverse order.
    pub async fn down(&self) -> Result<(), ControlError> {
        let mut first_error = None;
        for spec in self.file.services.iter().rev() {
            if let Err(error) = self.stop_service(&spec.name).await {
                tracing::warn!(service = %spec.name, %error, "could not stop");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn start_service(&self, name: &str) -> Result<(), ControlError> {
        let spec = self.spec(name)?.clone();
        let _lock = self.start_lock(name).await?;
        if let Some(pid) = self.pid(name)? {
            if process_state(pid) == Some('T') {
                self.signal_if_running(name, pid, "-CONT").await?;
            }
            return self.wait_healthy(&spec, None).await;
        }
        if let Some(port) = spec.port
            && port_in_use(port)
        {
            return Err(ControlError::PortInUse {
                service: spec.name.clone(),
                port,
            });
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let err = log.try_clone()?;
        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            // Its own process group: it outlives `lab` and a Ctrl-C in lab's terminal.
            .process_group(0);
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command.envs(&spec.env);
        let mut child = command.spawn().map_err(|e| {
            ControlError::Command(format!(
                "{name}: cannot run {}: {e}",
                spec.program.display()
            ))
        })?;
        let pid = child
            .id()
            .ok_or_else(|| ControlError::Command(format!("{name}: exited at once")))?;
        let id = ProcessId::of(pid).ok_or_else(|| {
            ControlError::Command(format!(
                "{name} exited at once; see {}",
                self.log_path(name).display()
            ))
        })?;
        std::fs::write(self.pid_path(name), id.to_line())?;
        // Reap it when it exits (while this process lives; afterwards init does).
        let (exited_tx, exited_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exited_tx.send(status.map(|s| s.to_string()).unwrap_or_default());
        });
        self.wait_healthy(&spec, Some(exited_rx)).await
    }

    /// Takes the start lock of `name` (`pids/<name>.lock`): two controllers starting one
    /// service must not both spawn it. A lock older than a start can take is stale.
    async fn start_lock(&self, name: &str) -> Result<StartLock, ControlError> {
        let path = self.dir.join("pids").join(format!("{name}.lock"));
        let deadline = Instant::now() + START_TIMEOUT + Duration::from_secs(5);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(StartLock { path }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .unwrap_or_default();
                    if age > START_TIMEOUT + Duration::from_secs(5) {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(ControlError::Timeout {
                            service: name.to_owned(),
                            what: "another process is still starting it".to_owned(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Waits until `spec` answers its health check; fails with its log's tail when it exits
    /// or the timeout passes.
    async fn wait_healthy(
        &self,
        spec: &ServiceSpec,
        mut exited: Option<tokio::sync::oneshot::Receiver<String>>,
    ) -> Result<(), ControlError> {
        let started = Instant::now();
        let deadline = started + START_TIMEOUT;
        loop {
            if let Some(rx) = exited.as_mut()
                && let Ok(status) = rx.try_recv()
            {
                return Err(ControlError::Command(format!(
                    "{} exited ({status}) before it was healthy; its log ends with:\n{}",
                    spec.name,
                    self.log_tail(&spec.name, 15)
                )));
            }
            let healthy = match &spec.health {
                Health::Alive => started.elapsed() >= ALIVE_FOR,
                other => probe(other).await,
            };
            if healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout {
                    service: spec.name.clone(),
                    what: format!(
                        "not healthy within {} s; its log ends with:\n{}",
                        START_TIMEOUT.as_secs(),
                        self.log_tail(&spec.name, 15)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop_service(&self, name: &str) -> Result<(), ControlError> {
        let Some(pid) = self.pid(name)? else {
            return Ok(());
        };
        // A paused process cannot act on SIGTERM.
        self.signal_if_running(name, pid, "-CONT").await?;
        self.signal_if_running(name, pid, "-TERM").await?;
        if !self.wait_exit(name, pid, STOP_GRACE).await {
            tracing::warn!(service = name, pid, "no exit after SIGTERM; killing");
            return self.kill_service(name).await;
        }
        let _ = std::fs::remove_file(self.pid_path(name));
        Ok(())
    }

    async fn kill_service(&self, name: &str) -> Result<(), ControlError> {
        let Some(pid) = self.pid(name)? else {
            return Ok(());
        };
        self.signal_if_running(name, pid, "-KILL").await?;
        if !self.wait_exit(name, pid, STOP_GRACE).await {
            // Still tracked, so a later `down` tries again.
            return Err(ControlError::Timeout {
                service: name.to_owned(),
                what: format!("pid {pid} still runs after SIGKILL"),
            });
        }
        let _ = std::fs::remove_file(self.pid_path(name));
        Ok(())
    }

    /// Sends `sig` to the process of `name`; one that exited meanwhile is no error.
    async fn signal_if_running(&self, name: &str, pid: u32, sig: &str) -> Result<(), ControlError> {
        match signal(pid, sig).await {
            Ok(()) => Ok(()),
            Err(_) if self.wait_exit(name, pid, Duration::ZERO).await => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn signal_service(&self, name: &str, sig: &str) -> Result<(), ControlError> {
        match self.pid(name)? {
            Some(pid) => signal(pid, sig).await,
            None => Err(ControlError::Command(format!("{name} is not running"))),
        }
    }

    /// Whether `pid` (the process of `name`) exited within `limit`.
    async fn wait_exit(&self, name: &str, pid: u32, limit: Duration) -> bool {
        let Ok(spec) = self.spec(name) else {
            return true;
        };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !process_runs(pid, &spec.program) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        !process_runs(pid, &spec.program)
    }

    /// The last `lines` lines of `service`'s log.
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(service)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn service_status(&self, spec: &ServiceSpec) -> Result<ServiceStatus, ControlError> {
        let pid = self.pid(&spec.name)?;
        let state = match pid {
            None => RunState::Stopped,
            Some(pid) if process_state(pid) == Some('T') => RunState::Paused,
            Some(_) => match &spec.health {
                Health::Alive => RunState::Healthy,
                other if probe(other).await => RunState::Healthy,
                _ => RunState::Running,
            },
        };
        Ok(ServiceStatus {
            name: spec.name.clone(),
            state,
            pid,
            url: spec.url.clone(),
        })
    }
}

impl Controller for LocalStack {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn status(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, ControlError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for spec in &self.file.services {
                all.push(self.service_status(spec).await?);
            }
            Ok(all)
        })
    }

    fn stop<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.stop_service(service))
    }

    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.start_service(service))
    }

    fn kill<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.kill_service(service))
    }

    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.signal_service(service, "-STOP"))
    }

    fn resume<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.signal_service(service, "-CONT"))
    }
}

/// A start lock, released when dropped.
struct StartLock {
    path: PathBuf,
}

impl Drop for StartLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A process named beyond its number: its start time (in clock ticks since boot) and the
/// boot it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessId {
    pid: u32,
    start_time: u64,
    boot_id: String,
}

impl ProcessId {
    /// The identity of running process `pid`.
    fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start_time: start_time(pid)?,
            boot_id: boot_id(),
        })
    }

    /// `pid start_time boot_id`, as written to a pid file.
    fn to_line(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.boot_id)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        Some(Self {
            pid: parts.next()?.parse().ok()?,
            start_time: parts.next()?.parse().ok()?,
            boot_id: parts.next()?.to_owned(),
        })
    }

    /// Whether the process this names is the one running under its pid now.
    fn is_current(&self) -> bool {
        Self::of(self.pid).is_some_and(|now| now == *self)
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with the state, field 3.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), empty where there is none.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Whether `pid` is a live (not zombie) process running `program`.
fn process_runs(pid: u32, program: &Path) -> bool {
    if matches!(process_state(pid), None | Some('Z' | 'X')) {
        return false;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let resolved = which(program).unwrap_or_else(|| program.to_path_buf());
    let expected = std::fs::canonicalize(&resolved).unwrap_or(resolved);
    // A binary rebuilt while it runs shows as "path (deleted)".
    let exe = exe.to_string_lossy();
    Path::new(exe.trim_end_matches(" (deleted)")) == expected
}

/// The state letter of `/proc/<pid>/stat` (R, S, T, Z…), `None` when there is no such process.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S …": the comm may hold spaces and parentheses; the state follows the
    // last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// `program` resolved through `PATH` when it is a bare name. Symbolic links are kept: some
/// programs (`redis-server`) act on the name they were started by.
pub fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether something listens on 127.0.0.1:`port` (or it cannot be bound).
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Sends `sig` (`-TERM`, `-KILL`, `-STOP`, `-CONT`) to `pid` with the system's `kill`.
async fn signal(pid: u32, sig: &str) -> Result<(), ControlError> {
    let status = tokio::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| ControlError::Command(format!("kill {sig} {pid}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ControlError::Command(format!("kill {sig} {pid}: {status}")))
    }
}

/// Whether the health check passes now.
async fn probe(health: &Health) -> bool {
    match health {
        Health::Alive => true,
        Health::Http { url } => {
            let Ok(client) = reqwest::Client::builder()
                .no_proxy()
                .timeout(PROBE_TIMEOUT)
                .build()
            else {
                return false;
            };
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
        Health::Redis { url } => {
            let ping = async {
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut con = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .ok()
            };
            matches!(
                tokio::time::timeout(PROBE_TIMEOUT, ping).await,
                Ok(Some(pong)) if pong == "PONG"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path, name: &str) -> StackFile {
        StackFile {
            base_port: 0,
            services: vec![ServiceSpec {
                name: name.to_owned(),
                program: PathBuf::from("sleep"),
                args: vec!["30".to_owned()],
                env: BTreeMap::from([("SOME".to_owned(), dir.display().to_string())]),
                port: None,
                url: None,
                health: Health::Alive,
            }],
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stack-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn a_service_starts_pauses_resumes_and_stops_and_its_pid_file_follows() {
        let dir = temp_dir("cycle");
        let stack = LocalStack::create(&dir, sleeper(&dir, "napper")).unwrap();
        let reopened = LocalStack::open(&dir).unwrap();
        assert_eq!(reopened.file(), stack.file());

        stack.start("napper").await.unwrap();
        let pid = stack.pid("napper").unwrap().expect("running");
        let status = stack.status().await.unwrap();
        assert_eq!(status[0].state, RunState::Healthy);
        assert_eq!(status[0].pid, Some(pid));

        stack.pause("napper").await.unwrap();
        assert_eq!(stack.status().await.unwrap()[0].state, RunState::Paused);
        stack.resume("napper").await.unwrap();

        // Another controller (the suite, say) sees and stops the same process.
        reopened.stop("napper").await.unwrap();
        assert_eq!(stack.pid("napper").unwrap(), None);
        assert!(!dir.join("pids/napper.pid").exists());
        assert_eq!(stack.status().await.unwrap()[0].state, RunState::Stopped);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_stale_pid_file_is_never_signalled_and_is_removed() {
        let dir = temp_dir("stale");
        let stack = LocalStack::create(&dir, sleeper(&dir, "napper")).unwrap();
        // Our own pid: alive, but not a `sleep` process.
        std::fs::write(
            dir.join("pids/napper.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(stack.pid("napper").unwrap(), None);
        assert!(!dir.join("pids/napper.pid").exists());
        stack.stop("napper").await.unwrap(); // nothing to stop, and we are still alive
        std::fs::write(dir.join("pids/napper.pid"), "not a pid").unwrap();
        assert_eq!(stack.pid("napper").unwrap(), None);

        // The right program under the right pid, but started at another time: a reused pid.
        stack.start("napper").await.unwrap();
        let pid = stack.pid("napper").unwrap().unwrap();
        let line = std::fs::read_to_string(dir.join("pids/napper.pid")).unwrap();
        let id = ProcessId::parse(&line).unwrap();
        assert_eq!(id.pid, pid);
        let older = ProcessId {
            start_time: id.start_time.saturating_sub(1),
            ..id.clone()
        };
        std::fs::write(dir.join("pids/napper.pid"), older.to_line()).unwrap();
        assert_eq!(
            stack.pid("napper").unwrap(),
            None,
            "not the process we started"
        );
        std::fs::write(dir.join("pids/napper.pid"), id.to_line()).unwrap();
        stack.kill("napper").await.unwrap();
        assert_eq!(stack.pid("napper").unwrap(), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_taken_port_fails_up_before_anything_starts() {
        let dir = temp_dir("port");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut file = sleeper(&dir, "first");
        let mut second = file.services[0].clone();
        second.name = "second".to_owned();
        second.port = Some(port);
        file.services.push(second);
        let stack = LocalStack::create(&dir, file).unwrap();
        let error = stack.up().await.unwrap_err();
        assert!(
            matches!(error, ControlError::PortInUse { port: p, ref service } if p == port && service == "second"),
            "{error}"
        );
        assert_eq!(stack.pid("first").unwrap(), None, "nothing started");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_service_that_dies_at_once_fails_with_its_log() {
        let dir = temp_dir("dies");
        let mut file = sleeper(&dir, "crasher");
        file.services[0].program = PathBuf::from("sh");
        file.services[0].args = vec!["-c".into(), "echo broken config >&2; exit 3".into()];
        file.services[0].health = Health::Http {
            url: "http://127.0.0.1:9/health".into(),
        };
        let stack = LocalStack::create(&dir, file).unwrap();
        let error = stack.start("crasher").await.unwrap_err().to_string();
        assert!(error.contains("broken config"), "{error}");
        assert!(stack.start("nobody").await.is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn starting_a_paused_service_resumes_it_and_two_starts_spawn_one_process() {
        let dir = temp_dir("twice");
        let stack = LocalStack::create(&dir, sleeper(&dir, "napper")).unwrap();
        let other = LocalStack::open(&dir).unwrap();
        let (a, b) = tokio::join!(stack.start("napper"), other.start("napper"));
        a.unwrap();
        b.unwrap();
        let pid = stack.pid("napper").unwrap().unwrap();
        stack.pause("napper").await.unwrap();
        stack.start("napper").await.unwrap();
        assert_eq!(stack.pid("napper").unwrap(), Some(pid), "the same process");
        assert_eq!(stack.status().await.unwrap()[0].state, RunState::Healthy);
        stack.down().await.unwrap();
        // Only one `sleep 30` was ever started from this directory's spec.
        let strays = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/environ"))
                    .is_ok_and(|env| env.contains(&format!("SOME={}", dir.display())))
                    && process_runs(*p, Path::new("sleep"))
            })
            .count();
        assert_eq!(strays, 0, "nothing left running");
        assert!(!dir.join("pids/napper.lock").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_state_letter_survives_odd_process_names() {
        assert!(matches!(process_state(std::process::id()), Some('R' | 'S')));
        assert_eq!(process_state(u32::MAX), None);
    }
}
