//! Which stack is under test and how to control it: `--controller local|compose`,
//! `--lab-dir`, `--compose-file`, `--compose-engine` (shared by `suite` and `validate`),
//! opened into a [`Stack`]: the [`Controller`] that stops, starts and lists its services and
//! reads their logs.

use std::path::PathBuf;

use stack_control::compose::{Compose, Engine};
use stack_control::local::LocalStack;
use stack_control::{Controller, PROMETHEUS, RunState, ServiceStatus};

use super::client::probe;
use super::report::Verdict;

/// How the stack's services are controlled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControllerKind {
    /// The local processes `lab up` started (its run directory).
    Local,
    /// `docker compose` or `podman-compose` on the compose file (`--compose-engine`).
    Compose,
}

/// Which compose command drives a compose stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ComposeEngine {
    /// Docker when `docker info` answers (a running engine), else podman-compose when it is
    /// installed, else Docker.
    Auto,
    /// `docker compose`.
    Docker,
    /// `podman-compose` (and `podman healthcheck run`, for podman without systemd).
    Podman,
}

impl ComposeEngine {
    /// The engine to use, detecting it for [`ComposeEngine::Auto`].
    pub async fn resolve(self) -> Engine {
        match self {
            Self::Auto => Engine::detect().await,
            Self::Docker => Engine::Docker,
            Self::Podman => Engine::Podman,
        }
    }
}

/// The stack options of `suite` and `validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// How to stop and start the stack's services: the local processes of `lab up`, or
    /// the compose file's services (Docker Compose or podman-compose).
    #[arg(long, value_enum, default_value_t = ControllerKind::Local)]
    pub controller: ControllerKind,
    /// The run directory of `lab up` (local controller); default `./.lab`.
    #[arg(long, env = "LAB_DIR")]
    pub lab_dir: Option<PathBuf>,
    /// The compose file (compose controller); repeat it for override files, in order
    /// (`--compose-file docker-compose.yml --compose-file deploy/compose.local.yml`).
    #[arg(long = "compose-file", default_value = "docker-compose.yml")]
    pub compose_files: Vec<PathBuf>,
    /// Which compose command drives the compose controller: `docker compose`,
    /// `podman-compose`, or auto (Docker when `docker info` answers, else podman-compose
    /// when installed).
    #[arg(long, value_enum, env = "COMPOSE_ENGINE", default_value_t = ComposeEngine::Auto)]
    pub compose_engine: ComposeEngine,
}

/// A stack the checks can act on.
pub struct Stack {
    /// Stops, starts and lists its services, and reads their logs.
    pub controller: Box<dyn Controller>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("controller", &self.controller.kind())
            .finish()
    }
}

impl StackArgs {
    /// Opens the stack and reads its status once; the error says why there is none (no
    /// `lab up` in the run directory, no Docker…), and for compose which command it ran.
    pub async fn open(&self) -> Result<(Stack, Vec<ServiceStatus>), String> {
        let mut label = String::from("local controller");
        let stack = match self.controller {
            ControllerKind::Local => {
                let dir = self.lab_dir.clone().unwrap_or_else(LocalStack::default_dir);
                let local = LocalStack::open(&dir).map_err(|e| e.to_string())?;
                Stack {
                    controller: Box::new(local),
                }
            }
            ControllerKind::Compose => {
                let engine = self.compose_engine.resolve().await;
                let how = match self.compose_engine {
                    ComposeEngine::Auto => "detected",
                    ComposeEngine::Docker | ComposeEngine::Podman => "chosen",
                };
                label = format!("compose controller ({engine}, {how})");
                Stack {
                    controller: Box::new(Compose::with_engine(&self.compose_files, engine)),
                }
            }
        };
        let status = stack.controller.status().await.map_err(|e| {
            // `docker compose` errors come with its usage text: the first line says it.
            let error = e.to_string();
            let first = error.lines().next().unwrap_or_default().trim().to_owned();
            format!("{label}: {first}")
        })?;
        Ok((stack, status))
    }
}

/// Running (healthy or still starting).
pub fn is_up(state: RunState) -> bool {
    matches!(state, RunState::Healthy | RunState::Running)
}

/// The status of `name`, if the stack has such a service.
pub fn find<'a>(status: &'a [ServiceStatus], name: &str) -> Option<&'a ServiceStatus> {
    status.iter().find(|s| s.name == name)
}

/// `llm_service_1 healthy, redis stopped…` for details.
pub fn describe(status: &[ServiceStatus]) -> String {
    status
        .iter()
        .map(|s| format!("{} {}", s.name, s.state.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An optional part of a stack (Prometheus, Grafana), probed by `GET {base}{path}`.
#[derive(Debug, Clone, Copy)]
pub struct OptionalService {
    /// What it is called in the checks' details.
    pub label: &'static str,
    /// The service names a stack may list it under.
    pub names: &'static [&'static str],
    /// The path that answers 2xx when it serves.
    pub path: &'static str,
}

/// Prometheus: `/-/healthy`.
pub const PROMETHEUS_SERVICE: OptionalService = OptionalService {
    label: "Prometheus",
    names: &[PROMETHEUS],
    path: "/-/healthy",
};

/// Grafana: `/api/health`.
pub const GRAFANA_SERVICE: OptionalService = OptionalService {
    label: "Grafana",
    names: &["grafana"],
    path: "/api/health",
};

/// Probes an optional part at the URL the stack's `status` lists for it (`lab up
/// --base-port 18000` puts Prometheus at 19090), else at `fallback_url` (a flag, or the
/// usual port). A part the stack lists must answer 2xx: anything else is a failure. A part
/// it does not list passes when something answers 2xx at `fallback_url`, and is skipped
/// otherwise. Shared by `suite` and `validate`.
pub async fn optional_service(
    http: &reqwest::Client,
    status: Option<&[ServiceStatus]>,
    service: &OptionalService,
    fallback_url: &str,
) -> Verdict {
    let listed = status.and_then(|s| service.names.iter().find_map(|name| find(s, name)));
    let base = listed
        .and_then(|s| s.url.as_deref())
        .filter(|u| u.starts_with("http"))
        .unwrap_or(fallback_url)
        .trim_end_matches('/');
    let url = format!("{base}{}", service.path);
    let label = service.label;
    match (probe(http, &url).await, listed) {
        (Ok(code), _) if (200..300).contains(&code) => {
            Verdict::pass(format!("{url} answered HTTP {code}"))
        }
        (Ok(code), Some(s)) => Verdict::fail(format!(
            "the stack lists {label} ({}) but {url} answered HTTP {code}",
            s.state.as_str()
        )),
        (Err(error), Some(s)) => Verdict::fail(format!(
            "the stack lists {label} ({}) but {url} does not answer: {error}",
            s.state.as_str()
        )),
        (answered, None) => {
            let seen = match answered {
                Ok(code) => format!("{url} answered HTTP {code}: not serving"),
                Err(_) => format!("nothing at {base}"),
            };
            match status {
                Some(_) => Verdict::skip(format!("no {label} in this stack ({seen})")),
                None => Verdict::skip(format!("no stack status to list {label}, and {seen}")),
            }
        }
    }
}
