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

mod probe;
mod process;
mod spec;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::{ControlError, Controller, RunState, ServiceStatus};
use probe::probe;
use process::{ProcessId, exited, process_runs, process_state, signal};
pub use process::{port_in_use, which};
pub use spec::{Health, SCRUBBED_ENV, STATE_FILE, ServiceSpec, StackFile};

/// How long a service may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a service may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long a service without a health endpoint must stay up to count as started.
const ALIVE_FOR: Duration = Duration::from_millis(500);
/// How long a paused process may take to read stopped.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

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
        Ok(self.process(service)?.map(|id| id.pid))
    }

    /// [`Self::pid`], with the process's full identity.
    fn process(&self, service: &str) -> Result<Option<ProcessId>, ControlError> {
        let spec = self.spec(service)?;
        let path = self.pid_path(service);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        match ProcessId::parse(&text) {
            Some(id) if id.is_current() && process_runs(id.pid, &spec.program) => Ok(Some(id)),
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

    /// Stops every service the stack started, in reverse order; returns once each process
    /// it stopped has exited (so their ports are free for the next `up`).
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
        if let Some(id) = self.process(name)? {
            if process_state(id.pid) == Some('T') {
                signal_if_running(&id, "-CONT").await?;
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

    /// Stops `name` (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and returns once its
    /// process has exited, every thread of it: its ports are free then.
    async fn stop_service(&self, name: &str) -> Result<(), ControlError> {
        let Some(id) = self.process(name)? else {
            return Ok(());
        };
        // A paused process cannot act on SIGTERM.
        signal_if_running(&id, "-CONT").await?;
        signal_if_running(&id, "-TERM").await?;
        if !wait_exit(&id, STOP_GRACE).await {
            tracing::warn!(
                service = name,
                pid = id.pid,
                "no exit after SIGTERM; killing"
            );
            return self.kill_process(name, &id).await;
        }
        let _ = std::fs::remove_file(self.pid_path(name));
        Ok(())
    }

    async fn kill_service(&self, name: &str) -> Result<(), ControlError> {
        match self.process(name)? {
            Some(id) => self.kill_process(name, &id).await,
            None => Ok(()),
        }
    }

    /// Sends SIGKILL to `id`, the process of `name`, and waits until it has exited.
    async fn kill_process(&self, name: &str, id: &ProcessId) -> Result<(), ControlError> {
        signal_if_running(id, "-KILL").await?;
        if !wait_exit(id, STOP_GRACE).await {
            // Still tracked, so a later `down` tries again.
            return Err(ControlError::Timeout {
                service: name.to_owned(),
                what: format!("pid {} still runs after SIGKILL", id.pid),
            });
        }
        let _ = std::fs::remove_file(self.pid_path(name));
        Ok(())
    }

    async fn signal_service(&self, name: &str, sig: &str) -> Result<(), ControlError> {
        match self.pid(name)? {
            Some(pid) => signal(pid, sig).await,
            None => Err(ControlError::Command(format!("{name} is not running"))),
        }
    }

    /// SIGSTOP, then waits (up to [`PAUSE_TIMEOUT`]) until the process reads stopped: the
    /// signal is delivered asynchronously, and a caller acts on the pause at once.
    async fn pause_service(&self, name: &str) -> Result<(), ControlError> {
        self.signal_service(name, "-STOP").await?;
        let Some(pid) = self.pid(name)? else {
            return Ok(());
        };
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while process_state(pid).is_some_and(|state| state != 'T') {
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout {
                    service: name.to_owned(),
                    what: format!("not stopped {} ms after SIGSTOP", PAUSE_TIMEOUT.as_millis()),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
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
        Box::pin(self.pause_service(service))
    }

    fn resume<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.signal_service(service, "-CONT"))
    }

    fn logs<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<String, ControlError>> {
        Box::pin(async move {
            self.spec(service)?;
            let bytes = tokio::fs::read(self.log_path(service)).await?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

/// Sends `sig` to `id`; a process that exited meanwhile is no error.
async fn signal_if_running(id: &ProcessId, sig: &str) -> Result<(), ControlError> {
    match signal(id.pid, sig).await {
        Ok(()) => Ok(()),
        Err(_) if exited(id) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Whether `id` exited (every thread of it) within `limit`.
async fn wait_exit(id: &ProcessId, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if exited(id) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    exited(id)
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

#[cfg(test)]
mod tests;
