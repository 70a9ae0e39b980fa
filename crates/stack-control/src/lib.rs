//! Controls the services of a running stack, for `lab`, `resilience-tests` and `chaos-monkey`:
//! stop, start, restart or kill a service by its compose name, and read their
//! status. Two implementations of [`Controller`]:
//!
//! - [`local::LocalStack`]: the local processes `lab up` started, described by the state file
//!   in the run directory (`$LAB_DIR`, default `./.lab/`): any process may control them.
//! - [`compose::Compose`]: `docker compose` or `podman-compose` ([`compose::Engine`]) on the
//!   project's compose file.
//!
//! Service names are the compose names ([`API_GATEWAY`], [`LLM_SERVICE_1`], [`LLM_SERVICE_2`],
//! [`LLM_SERVICE_3`], [`CHAOS_MONKEY`], [`REDIS`], [`PROMETHEUS`]).

pub mod compose;
pub mod local;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// The gateway.
pub const API_GATEWAY: &str = "api_gateway";
/// The first llm-service.
pub const LLM_SERVICE_1: &str = "llm_service_1";
/// The second llm-service.
pub const LLM_SERVICE_2: &str = "llm_service_2";
/// The third llm-service, the lab's secondary tier (`SERVICE_TIER=secondary`): it answers
/// when the primaries ([`LLM_SERVICE_1`], [`LLM_SERVICE_2`]) cannot.
pub const LLM_SERVICE_3: &str = "llm_service_3";
/// The chaos monkey daemon.
pub const CHAOS_MONKEY: &str = "chaos_monkey";
/// The stack's Redis.
pub const REDIS: &str = "redis";
/// Prometheus, when installed.
pub const PROMETHEUS: &str = "prometheus";

/// Why a control action failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such service in the stack.
    #[error("unknown service `{0}`")]
    UnknownService(String),
    /// No stack to control (nothing started, or the state file is unreadable).
    #[error("no stack: {0}")]
    NoStack(String),
    /// The service did not become healthy (or stop) in time.
    #[error("{service}: {what}")]
    Timeout {
        /// The service.
        service: String,
        /// What did not happen.
        what: String,
    },
    /// A port the stack needs is taken by another process.
    #[error("port {port} ({service}) is already in use by another process")]
    PortInUse {
        /// The service that needs it.
        service: String,
        /// The port.
        port: u16,
    },
    /// This controller cannot do that (a test double without logs, say).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A command (a binary of the stack, `docker compose`, `podman-compose`, `kill`) failed.
    #[error("{0}")]
    Command(String),
    /// Reading or writing the run directory failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a service is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Running and answering its health check.
    Healthy,
    /// Running, not (yet) answering its health check.
    Running,
    /// Paused with SIGSTOP.
    Paused,
    /// Not running.
    Stopped,
}

impl RunState {
    /// `healthy`, `running`, `paused`, `stopped` (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }
}

/// One service of the stack as [`Controller::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The compose name.
    pub name: String,
    /// What it is doing.
    pub state: RunState,
    /// Its process id, when running locally.
    pub pid: Option<u32>,
    /// Where it answers (`http://127.0.0.1:8000`, `redis://127.0.0.1:8379`), if it listens.
    pub url: Option<String>,
}

/// Stops, starts and inspects the services of a running stack.
pub trait Controller: Send + Sync {
    /// `local` or `compose`.
    fn kind(&self) -> &'static str;

    /// Every service and its state.
    fn status(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, ControlError>>;

    /// Stops `service` gracefully (SIGTERM, then SIGKILL after a grace period).
    fn stop<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Starts `service` (if it is not running) and waits until it is healthy.
    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Stops, then starts `service`, waiting until it is healthy again.
    fn restart<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.stop(service).await?;
            self.start(service).await
        })
    }

    /// Kills `service` at once (SIGKILL): a crash.
    fn kill<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Freezes `service` (SIGSTOP): alive, silent.
    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Thaws a paused `service` (SIGCONT).
    fn resume<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// What `service` has logged so far (its standard output and error), for checks that
    /// look for a line in it.
    fn logs<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<String, ControlError>>;
}

#[cfg(test)]
mod tests {
    use super::RunState;

    #[test]
    fn a_state_reads_as_it_is_serialized() {
        for state in [
            RunState::Healthy,
            RunState::Running,
            RunState::Paused,
            RunState::Stopped,
        ] {
            let json = serde_json::to_string(&state).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }
}
