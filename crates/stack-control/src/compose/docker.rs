//! `docker compose ps --all --format json` read as the stack's containers.

use serde::Deserialize;

use super::{Container, host_url, run_state};
use crate::ServiceStatus;

/// One line of `docker compose ps --format json`.
#[derive(Debug, Deserialize)]
struct PsLine {
    #[serde(rename = "Service")]
    service: String,
    /// The container's name.
    #[serde(rename = "Name", default)]
    name: String,
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

/// `docker compose ps --format json` output (one object per line, or one array) as
/// containers; a running service without a health check counts as healthy. A service's URL
/// is its first published port, as the host reaches it (the URLs the gateway lists are the
/// compose network's, which the host cannot resolve).
pub(super) fn parse_ps(text: &str) -> Vec<Container> {
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
            let state = run_state(&line.state, &line.health);
            let url = line
                .publishers
                .iter()
                .flatten()
                .find_map(|p| host_url(&p.address, p.target, p.published));
            Container {
                status: ServiceStatus {
                    url,
                    name: line.service,
                    state,
                    pid: None,
                },
                name: line.name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunState;

    fn statuses(text: &str) -> Vec<ServiceStatus> {
        parse_ps(text).into_iter().map(|c| c.status).collect()
    }

    #[test]
    fn ps_output_reads_in_both_of_its_shapes() {
        let lines = concat!(
            r#"{"Service":"api_gateway","Name":"resilient-llm-api_gateway-1","State":"running","Health":"healthy"}"#,
            "\n",
            r#"{"Service":"llm_service_1","State":"running","Health":"starting"}"#,
            "\n",
            r#"{"Service":"llm_service_2","State":"exited","Health":""}"#,
            "\n",
            r#"{"Service":"chaos_monkey","State":"running","Health":""}"#,
            "\n",
            r#"{"Service":"redis","State":"paused","Health":""}"#,
        );
        let states: Vec<(String, RunState)> = statuses(lines)
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
        assert_eq!(parse_ps(lines)[0].name, "resilient-llm-api_gateway-1");
        let array = r#"[{"Service":"redis","State":"running","Health":"healthy"}]"#;
        assert_eq!(statuses(array)[0].state, RunState::Healthy);
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
        let urls: Vec<Option<String>> = statuses(lines).into_iter().map(|s| s.url).collect();
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
}
