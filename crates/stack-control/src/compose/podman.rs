//! Podman's side: `podman-compose ps --format json` (which is `podman ps -a --filter
//! label=io.podman.compose.project=<project> --format json`) read as the stack's
//! containers, and what `podman healthcheck run` says.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Container, host_url, run_state};
use crate::ServiceStatus;

/// The label naming a container's compose service (podman-compose sets both).
const SERVICE_LABELS: [&str; 2] = ["com.docker.compose.service", "io.podman.compose.service"];

/// One container of `podman ps --format json` (one array of them), as podman 4.3 prints
/// it; only the fields read here.
#[derive(Debug, Deserialize)]
struct PsEntry {
    /// `["resilient-llm_redis_1"]`.
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    /// `running`, `paused`, `exited`, `created`…
    #[serde(rename = "State", default)]
    state: String,
    /// `Up 3 minutes ago (healthy)`, `Exited (0) 2 seconds ago`…
    #[serde(rename = "Status", default)]
    status: String,
    /// `null` for a container without labels.
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
    /// `null` for a container that publishes nothing.
    #[serde(rename = "Ports", default)]
    ports: Option<Vec<Port>>,
    /// A pod's infra container, which is no service.
    #[serde(rename = "IsInfra", default)]
    is_infra: bool,
}

/// A port a container publishes on the host.
#[derive(Debug, Deserialize)]
struct Port {
    /// `""` when bound to every interface.
    #[serde(default)]
    host_ip: String,
    #[serde(default)]
    container_port: u16,
    #[serde(default)]
    host_port: u16,
}

/// `podman ps --format json` output as containers: the service is the compose service
/// label, else the container's first name. Health is the word in parentheses that ends the
/// status (`starting`, `healthy`, `unhealthy`): a running container without one, or
/// `healthy`, counts as healthy. A container's URL is its first published port, as the
/// host reaches it. Empty output is no container; anything else that is not the JSON array
/// is an error.
pub(super) fn parse_ps(text: &str) -> Result<Vec<Container>, serde_json::Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<PsEntry> = serde_json::from_str(text)?;
    Ok(entries
        .into_iter()
        .filter(|entry| !entry.is_infra)
        .filter_map(container)
        .collect())
}

/// The container `entry` describes; none without a name.
fn container(entry: PsEntry) -> Option<Container> {
    let name = entry.names.as_ref().and_then(|n| n.first()).cloned();
    let service = entry
        .labels
        .as_ref()
        .and_then(|labels| SERVICE_LABELS.iter().find_map(|l| labels.get(*l)))
        .cloned()
        .or_else(|| name.clone())?;
    let state = run_state(
        &entry.state.to_ascii_lowercase(),
        health_word(&entry.status),
    );
    let url = entry
        .ports
        .iter()
        .flatten()
        .find_map(|p| host_url(&p.host_ip, p.container_port, p.host_port));
    Some(Container {
        status: ServiceStatus {
            name: service,
            state,
            pid: None,
            url,
        },
        name: name.unwrap_or_default(),
    })
}

/// The health a status ends with: `Up 3 minutes ago (healthy)` → `healthy`; `""` without
/// one (`Up 5 seconds ago`, `Exited (0) 2 seconds ago`).
fn health_word(status: &str) -> &str {
    status
        .trim()
        .strip_suffix(')')
        .and_then(|s| s.rsplit_once('('))
        .map(|(_, word)| word.trim())
        .filter(|word| matches!(*word, "healthy" | "unhealthy" | "starting"))
        .unwrap_or("")
}

/// Whether a line of podman's standard error is only the complaint of a machine without
/// systemd or syslog, which comes with every `podman-compose up` and `podman run` there.
pub(super) fn is_noise(line: &str) -> bool {
    line.contains("unable to get systemd connection")
        || line.contains("failed to connect to syslog")
}

/// What `podman healthcheck run <container>` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    /// Exit 0: the check passes.
    Healthy,
    /// The container has no health check: it counts as healthy once running.
    NoCheck,
    /// The check fails (`unhealthy`), the container is not running, or the check did not
    /// answer: why.
    NotYet(String),
}

impl Health {
    /// Whether the service has started.
    pub(super) fn is_ready(&self) -> bool {
        matches!(self, Self::Healthy | Self::NoCheck)
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::NoCheck => f.write_str("running, no health check"),
            Self::NotYet(why) => f.write_str(why),
        }
    }
}

/// The health `podman healthcheck run` reports by its exit status and output: exit 0 is
/// healthy; `Error: container <id> has no defined healthcheck` (exit 125) is a container
/// without a check; anything else (`unhealthy` with exit 1, `Error: container <id> is not
/// running` with exit 125) is not healthy yet.
pub(super) fn verdict(success: bool, stdout: &str, stderr: &str) -> Health {
    if success {
        Health::Healthy
    } else if stderr.contains("has no defined healthcheck") {
        Health::NoCheck
    } else {
        let said = [stdout.trim(), stderr.trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("health check failed");
        Health::NotYet(said.lines().next().unwrap_or(said).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunState;

    /// A `podman ps --format json` entry as podman 4.3.1 prints it (fields trimmed).
    fn entry(name: &str, labels: &str, state: &str, status: &str, ports: &str) -> String {
        format!(
            concat!(
                r#"{{"AutoRemove":false,"Command":["sleep","60"],"Exited":false,"ExitCode":0,"#,
                r#""Id":"5629e5aa","Image":"localhost/lab-debian:bookworm","IsInfra":false,"#,
                r#""Labels":{},"Mounts":[],"Names":["{}"],"Networks":["podman"],"#,
                r#""Pid":13627,"Pod":"","PodName":"","Ports":{},"Size":null,"#,
                r#""State":"{}","Status":"{}","Created":1796600933}}"#,
            ),
            labels, name, ports, state, status
        )
    }

    fn labels(service: &str) -> String {
        format!(
            r#"{{"com.docker.compose.project":"resilient-llm","com.docker.compose.service":"{service}","io.podman.compose.project":"resilient-llm","io.podman.compose.service":"{service}"}}"#
        )
    }

    fn states(text: &str) -> Vec<(String, RunState)> {
        parse_ps(text)
            .unwrap()
            .into_iter()
            .map(|c| (c.status.name, c.status.state))
            .collect()
    }

    #[test]
    fn every_state_and_health_word_reads_as_a_run_state() {
        let rows = [
            ("api_gateway", "running", "Up 3 minutes ago (healthy)"),
            ("llm_service_1", "running", "Up 5 seconds ago (starting)"),
            ("llm_service_2", "running", "Up 1 minute ago (unhealthy)"),
            ("chaos_monkey", "running", "Up 2 seconds ago"),
            ("redis", "paused", "Paused (healthy)"),
            ("prometheus", "exited", "Exited (0) 2 seconds ago"),
            ("grafana", "created", "Created"),
            ("extra", "Running", "Up Less than a second ago"),
        ];
        let text = format!(
            "[{}]",
            rows.iter()
                .map(|(service, state, status)| {
                    let name = format!("resilient-llm_{service}_1");
                    entry(&name, &labels(service), state, status, "null")
                })
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            states(&text),
            [
                ("api_gateway".to_owned(), RunState::Healthy),
                ("llm_service_1".to_owned(), RunState::Running),
                ("llm_service_2".to_owned(), RunState::Running),
                ("chaos_monkey".to_owned(), RunState::Healthy),
                ("redis".to_owned(), RunState::Paused),
                ("prometheus".to_owned(), RunState::Stopped),
                ("grafana".to_owned(), RunState::Stopped),
                ("extra".to_owned(), RunState::Healthy),
            ]
        );
        let containers = parse_ps(&text).unwrap();
        assert_eq!(containers[0].name, "resilient-llm_api_gateway_1");
        assert!(containers.iter().all(|c| c.status.pid.is_none()));
    }

    #[test]
    fn the_service_is_the_compose_label_else_the_first_name() {
        let text = format!(
            "[{},{},{}]",
            entry(
                "resilient-llm_redis_1",
                &labels("redis"),
                "running",
                "Up",
                "null"
            ),
            entry("loose", "null", "running", "Up", "null"),
            entry(
                "podman-only",
                r#"{"io.podman.compose.service":"llm_service_2"}"#,
                "exited",
                "Exited (137) 1 second ago",
                "null"
            ),
        );
        let containers = parse_ps(&text).unwrap();
        let names: Vec<(&str, &str)> = containers
            .iter()
            .map(|c| (c.status.name.as_str(), c.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("redis", "resilient-llm_redis_1"),
                ("loose", "loose"),
                ("llm_service_2", "podman-only"),
            ]
        );
    }

    #[test]
    fn published_ports_are_where_the_host_reaches_a_container() {
        let port = |ip: &str, container: u16, host: u16| {
            format!(
                r#"{{"host_ip":"{ip}","container_port":{container},"host_port":{host},"range":1,"protocol":"tcp"}}"#
            )
        };
        let text = format!(
            "[{},{},{},{},{}]",
            entry(
                "a",
                &labels("llm_service_1"),
                "running",
                "Up",
                &format!("[{}]", port("", 8000, 8001))
            ),
            entry(
                "b",
                &labels("redis"),
                "running",
                "Up",
                &format!("[{}]", port("127.0.0.1", 6379, 18379))
            ),
            entry(
                "c",
                &labels("api_gateway"),
                "running",
                "Up",
                &format!("[{},{}]", port("0.0.0.0", 8000, 8000), port("", 9000, 9000))
            ),
            entry("d", &labels("chaos_monkey"), "running", "Up", "null"),
            entry("e", &labels("prometheus"), "exited", "Exited (0)", "[]"),
        );
        let urls: Vec<Option<String>> = parse_ps(&text)
            .unwrap()
            .into_iter()
            .map(|c| c.status.url)
            .collect();
        assert_eq!(
            urls,
            [
                Some("http://127.0.0.1:8001".to_owned()),
                Some("redis://127.0.0.1:18379".to_owned()),
                Some("http://127.0.0.1:8000".to_owned()),
                None,
                None,
            ]
        );
    }

    #[test]
    fn empty_output_is_no_container_and_other_text_an_error() {
        assert!(parse_ps("").unwrap().is_empty());
        assert!(parse_ps("[]\n").unwrap().is_empty());
        assert!(parse_ps("podman ps -a --filter label=x").is_err());
        let infra = r#"[{"Names":["abc-infra"],"State":"running","Status":"Up","IsInfra":true,"Labels":null,"Ports":null}]"#;
        assert!(parse_ps(infra).unwrap().is_empty(), "an infra container");
        let nameless = r#"[{"Names":[],"State":"running","Status":"Up","Labels":null}]"#;
        assert!(parse_ps(nameless).unwrap().is_empty());
    }

    #[test]
    fn health_is_the_word_that_ends_the_status() {
        assert_eq!(health_word("Up 3 minutes ago (healthy)"), "healthy");
        assert_eq!(health_word("Up 5 seconds ago (starting) "), "starting");
        assert_eq!(health_word("Up 1 minute ago (unhealthy)"), "unhealthy");
        assert_eq!(health_word("Up 5 seconds ago"), "");
        assert_eq!(health_word("Exited (0) 2 seconds ago"), "");
        assert_eq!(health_word("Exited (0)"), "", "an exit code is no health");
    }

    #[test]
    fn a_health_check_passes_on_exit_0_or_without_a_check() {
        assert_eq!(verdict(true, "", ""), Health::Healthy);
        let no_check = verdict(
            false,
            "",
            "Error: container c764119b38c8 has no defined healthcheck",
        );
        assert_eq!(no_check, Health::NoCheck);
        assert!(no_check.is_ready() && Health::Healthy.is_ready());

        let unhealthy = verdict(false, "unhealthy\n", "");
        assert_eq!(unhealthy, Health::NotYet("unhealthy".to_owned()));
        assert!(!unhealthy.is_ready());
        let stopped = verdict(false, "", "Error: container 5629e5aa is not running");
        assert_eq!(
            stopped,
            Health::NotYet("Error: container 5629e5aa is not running".to_owned())
        );
        assert!(!stopped.is_ready());
        assert_eq!(
            verdict(false, "", ""),
            Health::NotYet("health check failed".to_owned())
        );
    }

    #[test]
    fn systemd_and_syslog_complaints_are_noise() {
        assert!(is_noise(
            r#"time="2026-12-06T23:48:53Z" level=error msg="unable to get systemd connection to add healthchecks: dial unix /run/systemd/private: connect: no such file or directory""#
        ));
        assert!(is_noise("failed to connect to syslog: Initialization"));
        assert!(!is_noise(
            "WARNING:podman_compose:missing services [nosuch]"
        ));
    }
}
