//! The stack as Docker Compose services: each action is one `docker compose -f <file> …`
//! command, and `start` waits until the service reports healthy (or, without a health
//! check, running). Service names are the compose file's, the same as the local stack's.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::time::Instant;

use crate::local::START_TIMEOUT;
use crate::{ControlError, Controller, RunState, ServiceStatus};

/// `docker compose -f <file>`.
#[derive(Debug, Clone)]
pub struct Compose {
    /// The compose file.
    pub file: PathBuf,
    /// The program (`docker`; tests substitute another).
    pub program: PathBuf,
}

/// One line of `docker compose ps --format json`.
#[derive(Debug, Deserialize)]
struct PsLine {
    #[serde(rename = "Service")]
    service: String,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Health", default)]
    health: String,
    /// `null` for a service that publishes nothing.
    #[serde(rename = "Publishers", default)]
    publishers: Option<Vec<Publisher>>,
}

/// A port a compose service publishes on the host.
#[derive(Debug, Deserialize)]
struct Publisher {
    #[serde(rename = "URL", default)]
    address: String,
    #[serde(rename = "TargetPort", default)]
    target: u16,
    #[serde(rename = "PublishedPort", default)]
    published: u16,
}

impl Publisher {
    /// Where the host reaches it: Redis by `redis://`, the rest (HTTP services) by
    /// `http://`; an address bound to every interface is reached on loopback.
    fn url(&self) -> Option<String> {
        if self.published == 0 {
            return None;
        }
        let host = match self.address.as_str() {
            "" | "0.0.0.0" => "127.0.0.1".to_owned(),
            "::" => "[::1]".to_owned(),
            ip if ip.contains(':') => format!("[{ip}]"),
            ip => ip.to_owned(),
        };
        let scheme = if self.target == 6379 { "redis" } else { "http" };
        Some(format!("{scheme}://{host}:{}", self.published))
    }
}

impl Compose {
    /// Controls the services of `file` with `docker`.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            program: PathBuf::from("docker"),
        }
    }

    /// The arguments of `docker` for `verb` (`stop`, `up -d`, `kill`, `pause`…) on
    /// `service` (none for every service).
    pub fn args(&self, verb: &[&str], service: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "compose".to_owned(),
            "-f".to_owned(),
            self.file.display().to_string(),
        ];
        args.extend(verb.iter().map(|v| (*v).to_owned()));
        args.extend(service.map(str::to_owned));
        args
    }

    async fn run(&self, verb: &[&str], service: Option<&str>) -> Result<String, ControlError> {
        let args = self.args(verb, service);
        let output = tokio::process::Command::new(&self.program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                ControlError::Command(format!(
                    "{} {}: {e}",
                    self.program.display(),
                    args.join(" ")
                ))
            })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ControlError::Command(format!(
                "{} {}: {}",
                self.program.display(),
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    async fn ps(&self) -> Result<Vec<ServiceStatus>, ControlError> {
        let text = self.run(&["ps", "--all", "--format", "json"], None).await?;
        Ok(parse_ps(&text))
    }

    async fn up(&self, service: &str) -> Result<(), ControlError> {
        self.run(&["up", "-d", "--no-deps"], Some(service)).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let state = self
                .ps()
                .await?
                .into_iter()
                .find(|s| s.name == service)
                .map(|s| s.state);
            if state == Some(RunState::Healthy) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout {
                    service: service.to_owned(),
                    what: format!("not healthy within {} s", START_TIMEOUT.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// `docker compose ps --format json` output (one object per line, or one array) as
/// statuses; a running service without a health check counts as healthy. A service's URL
/// is its first published port, as the host reaches it (the URLs the gateway lists are the
/// compose network's, which the host cannot resolve).
fn parse_ps(text: &str) -> Vec<ServiceStatus> {
    let lines: Vec<PsLine> = match serde_json::from_str::<Vec<PsLine>>(text.trim()) {
        Ok(all) => all,
        Err(_) => text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
    };
    lines
        .into_iter()
        .map(|line| {
            let state = match (line.state.as_str(), line.health.as_str()) {
                ("paused", _) => RunState::Paused,
                ("running", "healthy" | "") => RunState::Healthy,
                ("running", _) => RunState::Running,
                _ => RunState::Stopped,
            };
            ServiceStatus {
                url: line.publishers.iter().flatten().find_map(Publisher::url),
                name: line.service,
                state,
                pid: None,
            }
        })
        .collect()
}

impl Controller for Compose {
    fn kind(&self) -> &'static str {
        "compose"
    }

    fn status(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, ControlError>> {
        Box::pin(self.ps())
    }

    fn stop<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.run(&["stop"], Some(service)).await.map(drop) })
    }

    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.up(service))
    }

    fn kill<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.run(&["kill"], Some(service)).await.map(drop) })
    }

    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.run(&["pause"], Some(service)).await.map(drop) })
    }

    fn resume<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.run(&["unpause"], Some(service)).await.map(drop) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_the_file_the_verb_and_the_service() {
        let compose = Compose::new("deploy/docker-compose.yml");
        assert_eq!(
            compose.args(&["up", "-d", "--no-deps"], Some("llm_service_1")),
            [
                "compose",
                "-f",
                "deploy/docker-compose.yml",
                "up",
                "-d",
                "--no-deps",
                "llm_service_1"
            ]
        );
        assert_eq!(
            compose.args(&["ps", "--all", "--format", "json"], None),
            [
                "compose",
                "-f",
                "deploy/docker-compose.yml",
                "ps",
                "--all",
                "--format",
                "json"
            ]
        );
    }

    #[test]
    fn ps_output_reads_in_both_of_its_shapes() {
        let lines = concat!(
            r#"{"Service":"api_gateway","State":"running","Health":"healthy"}"#,
            "\n",
            r#"{"Service":"llm_service_1","State":"running","Health":"starting"}"#,
            "\n",
            r#"{"Service":"llm_service_2","State":"exited","Health":""}"#,
            "\n",
            r#"{"Service":"chaos_monkey","State":"running","Health":""}"#,
            "\n",
            r#"{"Service":"redis","State":"paused","Health":""}"#,
        );
        let states: Vec<(String, RunState)> = parse_ps(lines)
            .into_iter()
            .map(|s| (s.name, s.state))
            .collect();
        assert_eq!(
            states,
            [
                ("api_gateway".to_owned(), RunState::Healthy),
                ("llm_service_1".to_owned(), RunState::Running),
                ("llm_service_2".to_owned(), RunState::Stopped),
                ("chaos_monkey".to_owned(), RunState::Healthy),
                ("redis".to_owned(), RunState::Paused),
            ]
        );
        let array = r#"[{"Service":"redis","State":"running","Health":"healthy"}]"#;
        assert_eq!(parse_ps(array)[0].state, RunState::Healthy);
    }

    #[test]
    fn published_ports_are_where_the_host_reaches_a_service() {
        let lines = concat!(
            r#"{"Service":"llm_service_1","State":"running","Health":"healthy","Publishers":"#,
            r#"[{"URL":"0.0.0.0","TargetPort":8000,"PublishedPort":8001,"Protocol":"tcp"},"#,
            r#"{"URL":"::","TargetPort":8000,"PublishedPort":8001,"Protocol":"tcp"}]}"#,
            "\n",
            r#"{"Service":"redis","State":"running","Health":"healthy","Publishers":"#,
            r#"[{"URL":"127.0.0.1","TargetPort":6379,"PublishedPort":6379,"Protocol":"tcp"}]}"#,
            "\n",
            r#"{"Service":"chaos_monkey","State":"running","Health":"healthy","Publishers":null}"#,
            "\n",
            r#"{"Service":"api_gateway","State":"exited","Health":"","Publishers":"#,
            r#"[{"URL":"","TargetPort":8000,"PublishedPort":0,"Protocol":"tcp"}]}"#,
        );
        let urls: Vec<Option<String>> = parse_ps(lines).into_iter().map(|s| s.url).collect();
        assert_eq!(
            urls,
            [
                Some("http://127.0.0.1:8001".to_owned()),
                Some("redis://127.0.0.1:6379".to_owned()),
                None,
                None,
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_docker_is_a_clear_error_naming_the_command() {
        let mut compose = Compose::new("docker-compose.yml");
        compose.program = PathBuf::from("false");
        let error = compose.stop("redis").await.unwrap_err().to_string();
        assert!(
            error.contains("compose -f docker-compose.yml stop redis"),
            "{error}"
        );
    }
}
