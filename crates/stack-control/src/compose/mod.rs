//! The stack as compose services, through whichever compose command is present:
//! `docker compose -f <file> …` ([`Engine::Docker`]) or `podman-compose -f <file> …`
//! ([`Engine::Podman`]). Each action is one command with a deadline, and an error names the
//! command. `start` waits until the service reports healthy (or, without a health check,
//! running). Service names are the compose file's, the same as the local stack's; the
//! project is the file's top-level `name:`, which both commands honour.
//!
//! Podman runs health checks from systemd timers; without systemd it never runs them, and a
//! running container's status stays `(starting)`. So under Podman `start` runs `podman
//! healthcheck run <container>` itself at each poll, and `status` counts a running
//! container whose check says `starting` or `unhealthy` as [`RunState::Running`]. The health
//! word `status` reports is the one of the last check that ran (by `start`, or by anyone): a
//! container that passed once reads `healthy` while it runs, whatever it does since; a
//! container that stopped reads stopped.

mod docker;
mod podman;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::local::START_TIMEOUT;
use crate::{ControlError, Controller, RunState, ServiceStatus};
use podman::Health;

/// How long an action (`up`, `stop`, `kill`, `pause`, `unpause`) may take before its
/// command is killed.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a query (`ps`, `podman healthcheck run`) may take before its command is killed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Engine::detect`] waits for each command it tries.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `start` looks again while a service is not healthy yet.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Which compose command drives the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `docker compose` (Docker's Compose plugin).
    Docker,
    /// `podman-compose` (PyPI), with `podman` for health checks.
    Podman,
}

impl Engine {
    /// The engine this machine has: Docker when `docker info` succeeds (a running Docker
    /// engine, not just its CLI), else Podman when `podman-compose --version` runs, else
    /// Docker (whose commands then fail, saying why). Each try has [`DETECT_TIMEOUT`].
    pub async fn detect() -> Self {
        Self::detect_with(Path::new("docker"), Path::new("podman-compose")).await
    }

    /// [`Engine::detect`] with other programs in place of `docker` and `podman-compose`.
    async fn detect_with(docker: &Path, podman_compose: &Path) -> Self {
        if succeeds(docker, &["info"]).await {
            Self::Docker
        } else if succeeds(podman_compose, &["--version"]).await {
            Self::Podman
        } else {
            Self::Docker
        }
    }

    /// The program that runs compose commands: `docker` or `podman-compose`.
    pub fn program(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Podman => "podman-compose",
        }
    }

    /// The arguments before the file: `compose` for `docker compose`, none for
    /// `podman-compose`.
    fn prefix(self) -> &'static [&'static str] {
        match self {
            Self::Docker => &["compose"],
            Self::Podman => &[],
        }
    }

    /// The verb listing every container of the project, stopped ones included, as JSON
    /// (`podman-compose ps` always lists them all and takes no `--all`).
    pub fn ps_verb(self) -> &'static [&'static str] {
        match self {
            Self::Docker => &["ps", "--all", "--format", "json"],
            Self::Podman => &["ps", "--format", "json"],
        }
    }

    /// The lines of a failed command's standard error worth showing: under Podman, without
    /// the complaints of a machine without systemd or syslog that come with every command.
    fn error_text(self, stderr: &[u8]) -> String {
        let text = String::from_utf8_lossy(stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .filter(|line| self == Self::Docker || !podman::is_noise(line))
            .collect();
        lines.join("\n")
    }
}

impl std::fmt::Display for Engine {
    /// `docker compose` or `podman-compose`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Docker => "docker compose",
            Self::Podman => "podman-compose",
        })
    }
}

/// The services of a compose file (and its overrides), controlled by
/// `docker compose -f <file>…` or `podman-compose -f <file>…`.
#[derive(Debug, Clone)]
pub struct Compose {
    /// The compose file, then the files that override it (`-f` each, in this order).
    pub files: Vec<PathBuf>,
    /// Which compose command drives it.
    pub engine: Engine,
    /// The program of the compose commands ([`Engine::program`]; tests substitute another).
    pub program: PathBuf,
    /// The program of `<podman> healthcheck run` under Podman (`podman`; tests substitute
    /// another).
    pub podman: PathBuf,
}

/// One container of the stack: its status, and the container's name (for `podman
/// healthcheck run`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    status: ServiceStatus,
    name: String,
}

impl Compose {
    /// Controls the services of `files` with `docker compose`.
    pub fn new<P: Into<PathBuf>>(files: impl IntoIterator<Item = P>) -> Self {
        Self::with_engine(files, Engine::Docker)
    }

    /// Controls the services of `files` (a compose file, then its overrides) with
    /// `engine`'s compose command.
    pub fn with_engine<P: Into<PathBuf>>(
        files: impl IntoIterator<Item = P>,
        engine: Engine,
    ) -> Self {
        Self {
            files: files.into_iter().map(Into::into).collect(),
            engine,
            program: PathBuf::from(engine.program()),
            podman: PathBuf::from("podman"),
        }
    }

    /// Controls the services of `files` with the engine [`Engine::detect`] finds.
    pub async fn detect<P: Into<PathBuf>>(files: impl IntoIterator<Item = P>) -> Self {
        Self::with_engine(files, Engine::detect().await)
    }

    /// The arguments of [`Compose::program`] for `verb` (`stop`, `up -d`, `kill`, `pause`…)
    /// on `service` (none for every service): `compose -f FILE… verb… service` for Docker,
    /// `-f FILE… verb… service` for Podman.
    pub fn args(&self, verb: &[&str], service: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = self
            .engine
            .prefix()
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        for file in &self.files {
            args.push("-f".to_owned());
            args.push(file.display().to_string());
        }
        args.extend(verb.iter().map(|v| (*v).to_owned()));
        args.extend(service.map(str::to_owned));
        args
    }

    /// Runs `verb` on `service` within `limit`: its standard output, or an error naming the
    /// command.
    async fn run(
        &self,
        verb: &[&str],
        service: Option<&str>,
        limit: Duration,
    ) -> Result<String, ControlError> {
        let args = self.args(verb, service);
        let line = command_line(&self.program, &args);
        let output = output(&self.program, &args, limit)
            .await
            .map_err(|e| ControlError::Command(format!("{line}: {e}")))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ControlError::Command(format!(
                "{line}: {}",
                failure(self.engine, &output)
            )))
        }
    }

    /// Every container of the project.
    async fn containers(&self) -> Result<Vec<Container>, ControlError> {
        let verb = self.engine.ps_verb();
        let text = self.run(verb, None, QUERY_TIMEOUT).await?;
        match self.engine {
            Engine::Docker => Ok(docker::parse_ps(&text)),
            Engine::Podman => podman::parse_ps(&text).map_err(|e| {
                let line = command_line(&self.program, &self.args(verb, None));
                ControlError::Command(format!("{line}: unreadable output: {e}"))
            }),
        }
    }

    /// The log of `service`: `docker compose logs` (no colours, no prefixes), or `podman
    /// logs <container>` (podman-compose's own `logs` prefixes every line).
    async fn service_log(&self, service: &str) -> Result<String, ControlError> {
        if self.engine == Engine::Docker {
            let verb = ["logs", "--no-color", "--no-log-prefix"];
            return self.run(&verb, Some(service), QUERY_TIMEOUT).await;
        }
        let container = self
            .containers()
            .await?
            .into_iter()
            .find(|c| c.status.name == service)
            .ok_or_else(|| ControlError::UnknownService(service.to_owned()))?;
        let args = ["logs".to_owned(), container.name];
        let line = command_line(&self.podman, &args);
        let output = output(&self.podman, &args, QUERY_TIMEOUT)
            .await
            .map_err(|e| ControlError::Command(format!("{line}: {e}")))?;
        if !output.status.success() {
            let why = failure(self.engine, &output);
            return Err(ControlError::Command(format!("{line}: {why}")));
        }
        // The container's standard output, then its standard error.
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok(text)
    }

    /// `podman healthcheck run <container>`: what the container's health check says now.
    async fn health_check(&self, container: &str) -> Result<Health, ControlError> {
        let args = ["healthcheck", "run", container].map(str::to_owned);
        match output(&self.podman, &args, QUERY_TIMEOUT).await {
            Ok(output) => Ok(podman::verdict(
                output.status.success(),
                &String::from_utf8_lossy(&output.stdout),
                &self.engine.error_text(&output.stderr),
            )),
            // A check that hangs is a check that does not pass (yet).
            Err(why) if why.starts_with(NO_ANSWER) => Ok(Health::NotYet(why)),
            Err(why) => Err(ControlError::Command(format!(
                "{}: {why}",
                command_line(&self.podman, &args)
            ))),
        }
    }

    /// Whether `service` is healthy now: `Ok(())`, or what it is instead.
    async fn healthy(&self, service: &str) -> Result<Result<(), String>, ControlError> {
        let containers = self.containers().await?;
        let Some(container) = containers.into_iter().find(|c| c.status.name == service) else {
            return Ok(Err("not listed".to_owned()));
        };
        let state = container.status.state;
        match self.engine {
            Engine::Docker if state == RunState::Healthy => Ok(Ok(())),
            Engine::Podman if matches!(state, RunState::Healthy | RunState::Running) => {
                let health = self.health_check(&container.name).await?;
                Ok(if health.is_ready() {
                    Ok(())
                } else {
                    Err(health.to_string())
                })
            }
            _ => Ok(Err(state.as_str().to_owned())),
        }
    }

    /// `up -d --no-deps service`, then waits until it is healthy.
    async fn up(&self, service: &str) -> Result<(), ControlError> {
        self.run(&["up", "-d", "--no-deps"], Some(service), ACTION_TIMEOUT)
            .await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let seen = match self.healthy(service).await? {
                Ok(()) => return Ok(()),
                Err(seen) => seen,
            };
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout {
                    service: service.to_owned(),
                    what: format!(
                        "not healthy within {} s under {} (last: {seen})",
                        START_TIMEOUT.as_secs(),
                        self.engine
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// An action on one service, with [`ACTION_TIMEOUT`].
    async fn act(&self, verb: &str, service: &str) -> Result<(), ControlError> {
        self.run(&[verb], Some(service), ACTION_TIMEOUT)
            .await
            .map(drop)
    }
}

/// A container's state from the engine's words (`running`, `paused`, `exited`…) and its
/// health (`healthy`, `starting`, `unhealthy`, or empty without a check): running without a
/// check counts as healthy, as both engines report it.
fn run_state(state: &str, health: &str) -> RunState {
    match (state, health) {
        ("paused", _) => RunState::Paused,
        ("running", "healthy" | "") => RunState::Healthy,
        ("running", _) => RunState::Running,
        _ => RunState::Stopped,
    }
}

/// Where the host reaches a port published at `address:published` for container port
/// `target`: Redis by `redis://`, the rest (HTTP services) by `http://`; an address bound to
/// every interface is reached on loopback. None when nothing is published.
fn host_url(address: &str, target: u16, published: u16) -> Option<String> {
    if published == 0 {
        return None;
    }
    let host = match address {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        ip if ip.contains(':') => format!("[{ip}]"),
        ip => ip.to_owned(),
    };
    let scheme = if target == 6379 { "redis" } else { "http" };
    Some(format!("{scheme}://{host}:{published}"))
}

/// `program arg…`, for errors.
fn command_line(program: &Path, args: &[String]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// Why a command that ran failed: its standard error, else its exit status.
fn failure(engine: Engine, output: &Output) -> String {
    let text = engine.error_text(&output.stderr);
    if text.is_empty() {
        output.status.to_string()
    } else {
        text
    }
}

/// How the error of a command killed at its deadline begins.
const NO_ANSWER: &str = "no answer within";

/// Runs `program args…` (no input) and collects its output; a command still running after
/// `limit` is killed, with every process it started (podman-compose runs `podman stop`,
/// `podman exec`… as its children), and is an error.
async fn output(program: &Path, args: &[String], limit: Duration) -> Result<Output, String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the deadline reaches its children too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let group = child.id();
    // On timeout the dropped future drops the child, which kills it; the group goes first.
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => {
            if let Some(group) = group {
                let _ = tokio::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{group}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
            }
            Err(format!("{NO_ANSWER} {limit:?}; killed"))
        }
    }
}

/// Whether `program args…` exits 0 within [`DETECT_TIMEOUT`].
async fn succeeds(program: &Path, args: &[&str]) -> bool {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    output(program, &args, DETECT_TIMEOUT)
        .await
        .is_ok_and(|o| o.status.success())
}

impl Controller for Compose {
    fn kind(&self) -> &'static str {
        "compose"
    }

    fn status(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, ControlError>> {
        Box::pin(async move {
            let containers = self.containers().await?;
            Ok(containers.into_iter().map(|c| c.status).collect())
        })
    }

    fn stop<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.act("stop", service))
    }

    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.up(service))
    }

    fn kill<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.act("kill", service))
    }

    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.act("pause", service))
    }

    fn resume<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.act("unpause", service))
    }

    fn logs<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<String, ControlError>> {
        Box::pin(self.service_log(service))
    }
}
