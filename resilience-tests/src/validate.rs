//! `resilience-tests validate`: the lab's "Checklist Final de Validación" — services up,
//! the gateway's `/health`, Grafana and Prometheus where present (at the URLs the stack's
//! status lists, else at `--grafana` and `--prometheus`), a generation, the breaker CLOSED in
//! `/metrics`, discovered services — one line each, then `N passed, N failed[, N skipped]`.
//! Absent parts (no stack to ask, no Grafana, no Prometheus) are skipped, never failed; a
//! part the stack lists that does not answer 2xx fails. Uses the suite's client and report.

use std::process::ExitCode;
use std::time::Instant;

use llm_api::breaker::BreakerState;
use llm_api::generate::GenerateRequest;
use stack_control::{
    API_GATEWAY, LLM_SERVICE_1, LLM_SERVICE_2, LLM_SERVICE_3, REDIS, ServiceStatus,
};

use crate::suite::client::{GatewayClient, health, http_client};
use crate::suite::report::{Category, CheckResult, Report, Verdict};
use crate::suite::stack::{
    GRAFANA_SERVICE, PROMETHEUS_SERVICE, StackArgs, find, is_up, optional_service,
};

/// `validate` options.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://localhost:8000")]
    pub gateway: String,
    /// The stack whose services are listed.
    #[command(flatten)]
    pub stack: StackArgs,
    /// Grafana's base URL when the stack does not list one (skipped when the stack does not
    /// list Grafana and nothing answers there).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub grafana: String,
    /// Prometheus's base URL when the stack does not list one (skipped when the stack does
    /// not list Prometheus and nothing answers there).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub prometheus: String,
}

/// The services the lab cannot do without; Redis and the secondary tier's llm_service_3 only
/// when the stack has them (`lab up` without `redis-server` runs the stack on static
/// discovery, with no Redis to list and no secondary tier).
const CORE_SERVICES: [&str; 5] = [
    API_GATEWAY,
    LLM_SERVICE_1,
    LLM_SERVICE_2,
    LLM_SERVICE_3,
    REDIS,
];
/// The [`CORE_SERVICES`] required only when the stack lists them.
const IF_LISTED: [&str; 2] = [LLM_SERVICE_3, REDIS];

/// Runs the checklist; exits non-zero when any check failed.
pub async fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    println!("🧪 Final lab validation");
    println!("=======================");
    let stack = args.stack.open().await.map(|(_, status)| status);
    let report = checklist(&args, stack, true).await?;
    let counts = report.counts();
    println!("=======================");
    println!("{}", counts.summary_line());
    Ok(if counts.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every check of the checklist, in the lab's order, given the stack's status (or why
/// there is none).
async fn checklist(
    args: &ValidateArgs,
    stack: Result<Vec<ServiceStatus>, String>,
    echo: bool,
) -> anyhow::Result<Report> {
    let http = http_client()?;
    let gateway = GatewayClient::new(http.clone(), &args.gateway);
    let mut report = Report::new(echo);
    let mut record = |name: &str, started: Instant, verdict: Verdict| {
        report.record(CheckResult {
            name: name.to_owned(),
            category: Category::Checklist,
            verdict,
            duration: started.elapsed(),
        });
    };

    let started = Instant::now();
    let services = match &stack {
        Ok(status) => services_up(status),
        Err(why) => Verdict::skip(format!("no stack to ask: {why}")),
    };
    let status = stack.as_deref().ok();
    record("1. services running", started, services);

    let started = Instant::now();
    let reachable = match gateway.health().await {
        Ok(doc) => Verdict::check(
            (200..300).contains(&doc.status),
            format!(
                "{}/health HTTP {}, overall_status {}",
                gateway.base(),
                doc.status,
                health::overall(&doc)
            ),
        ),
        Err(error) => Verdict::fail(format!("{error:#}")),
    };
    record("2. gateway /health", started, reachable);

    for (name, service, fallback_url) in [
        ("2. Grafana", &GRAFANA_SERVICE, &args.grafana),
        ("2. Prometheus", &PROMETHEUS_SERVICE, &args.prometheus),
    ] {
        let started = Instant::now();
        let verdict = optional_service(&http, status, service, fallback_url).await;
        record(name, started, verdict);
    }

    let started = Instant::now();
    let answer = gateway
        .post_generate(
            &GenerateRequest {
                max_tokens: Some(10),
                ..GenerateRequest::new("Hello")
            },
            None,
        )
        .await;
    let generation = if answer.is_success() {
        Verdict::pass(format!(
            "status success, served by {}",
            answer.served_by().unwrap_or("?")
        ))
    } else {
        Verdict::fail(answer.describe())
    };
    record("3. text generation", started, generation);

    let started = Instant::now();
    let breaker = match gateway.breaker_state().await {
        Ok(state) => Verdict::check(
            state == BreakerState::Closed,
            format!("/metrics circuit_breaker.state {}", state.as_str()),
        ),
        Err(error) => Verdict::fail(format!("{error:#}")),
    };
    record("4. circuit breaker CLOSED", started, breaker);

    let started = Instant::now();
    let discovery = match gateway.health().await {
        Ok(doc) => match doc.typed("GET /health") {
            Ok(health) => {
                let n = health.service_discovery.available_services;
                Verdict::check(n > 0, format!("{n} service(s) available"))
            }
            Err(error) => Verdict::fail(format!("{error:#}")),
        },
        Err(error) => Verdict::fail(format!("{error:#}")),
    };
    record("5. service discovery", started, discovery);
    Ok(report)
}

/// The lab's services up; others (chaos monkey, Prometheus…) listed for information.
fn services_up(status: &[ServiceStatus]) -> Verdict {
    let down: Vec<String> = CORE_SERVICES
        .iter()
        .filter(|name| !IF_LISTED.contains(name) || find(status, name).is_some())
        .filter(|name| !find(status, name).is_some_and(|s| is_up(s.state)))
        .map(|name| {
            find(status, name).map_or(format!("{name} absent"), |s| {
                format!("{name} {}", s.state.as_str())
            })
        })
        .collect();
    let up = status.iter().filter(|s| is_up(s.state)).count();
    let detail = format!(
        "{up}/{} up: {}",
        status.len(),
        crate::suite::stack::describe(status)
    );
    if down.is_empty() {
        Verdict::pass(detail)
    } else {
        Verdict::fail(format!("{detail} — not up: {}", down.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::http::StatusCode;
    use stack_control::{PROMETHEUS, RunState};

    use super::*;
    use crate::suite::report::Outcome;
    use crate::suite::stack::{ComposeEngine, ControllerKind};
    use crate::suite::tests::fake::{FakeGateway, FakeProbe, closed_port_url};

    fn args(gateway: &str) -> ValidateArgs {
        ValidateArgs {
            gateway: gateway.to_owned(),
            stack: StackArgs {
                controller: ControllerKind::Local,
                lab_dir: Some(PathBuf::from("/nonexistent/resilience-tests-lab")),
                compose_files: vec![PathBuf::from("docker-compose.yml")],
                compose_engine: ComposeEngine::Auto,
            },
            grafana: closed_port_url(),
            prometheus: closed_port_url(),
        }
    }

    fn no_stack() -> Result<Vec<ServiceStatus>, String> {
        Err("cannot read /nonexistent/stack.json".into())
    }

    fn service(name: &str, state: RunState, url: Option<String>) -> ServiceStatus {
        ServiceStatus {
            name: name.to_owned(),
            state,
            pid: None,
            url,
        }
    }

    fn outcomes(report: &Report) -> Vec<(String, Outcome)> {
        report
            .results()
            .iter()
            .map(|r| (r.name.clone(), r.verdict.outcome))
            .collect()
    }

    #[tokio::test]
    async fn a_healthy_gateway_passes_and_absent_parts_are_skipped() {
        let gateway = FakeGateway::start().await;
        let report = checklist(&args(&gateway.url), no_stack(), false)
            .await
            .unwrap();
        let outcomes = outcomes(&report);
        assert_eq!(
            outcomes,
            [
                ("1. services running".to_owned(), Outcome::Skip),
                ("2. gateway /health".to_owned(), Outcome::Pass),
                ("2. Grafana".to_owned(), Outcome::Skip),
                ("2. Prometheus".to_owned(), Outcome::Skip),
                ("3. text generation".to_owned(), Outcome::Pass),
                ("4. circuit breaker CLOSED".to_owned(), Outcome::Pass),
                ("5. service discovery".to_owned(), Outcome::Pass),
            ]
        );
        assert_eq!(
            report.counts().summary_line(),
            "4 passed, 0 failed, 3 skipped"
        );
    }

    #[tokio::test]
    async fn an_open_breaker_and_no_services_fail_the_checklist() {
        let gateway = FakeGateway::start().await;
        gateway.state.set_breaker(BreakerState::Open);
        gateway.state.stop_all_llm();
        let report = checklist(&args(&gateway.url), no_stack(), false)
            .await
            .unwrap();
        let failed: Vec<String> = outcomes(&report)
            .into_iter()
            .filter(|(_, o)| *o == Outcome::Fail)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            failed,
            ["4. circuit breaker CLOSED", "5. service discovery"],
            "{:?}",
            report.results()
        );
        assert_eq!(report.counts().failed, 2);
    }

    #[tokio::test]
    async fn prometheus_and_grafana_are_probed_where_the_stack_lists_them() {
        let gateway = FakeGateway::start().await;
        // `lab up --base-port 18000`: Prometheus at 19090, not at the --prometheus default.
        let prometheus = FakeProbe::start("/-/healthy", StatusCode::OK).await;
        let mut status: Vec<ServiceStatus> = CORE_SERVICES
            .iter()
            .map(|n| service(n, RunState::Healthy, None))
            .collect();
        status.push(service(
            PROMETHEUS,
            RunState::Healthy,
            Some(prometheus.url.clone()),
        ));
        // Listed, but nothing answers there: a failure, not a skip.
        status.push(service(
            "grafana",
            RunState::Stopped,
            Some(closed_port_url()),
        ));

        let report = checklist(&args(&gateway.url), Ok(status), false)
            .await
            .unwrap();

        let verdict = |name: &str| {
            report
                .results()
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.verdict.clone())
                .unwrap()
        };
        let prometheus_verdict = verdict("2. Prometheus");
        assert_eq!(prometheus_verdict.outcome, Outcome::Pass);
        assert!(
            prometheus_verdict
                .detail
                .contains(&format!("{}/-/healthy", prometheus.url)),
            "{}",
            prometheus_verdict.detail
        );
        let grafana = verdict("2. Grafana");
        assert_eq!(grafana.outcome, Outcome::Fail);
        assert!(
            grafana
                .detail
                .starts_with("the stack lists Grafana (stopped)"),
            "{}",
            grafana.detail
        );
        assert_eq!(verdict("1. services running").outcome, Outcome::Pass);
    }

    #[tokio::test]
    async fn a_listed_service_must_answer_2xx_and_an_unlisted_one_is_skipped() {
        let failing = FakeProbe::start("/other", StatusCode::OK).await;
        let http = http_client().unwrap();
        let listed = [service(
            PROMETHEUS,
            RunState::Running,
            Some(format!("{}/", failing.url)),
        )];
        let verdict = optional_service(
            &http,
            Some(&listed),
            &PROMETHEUS_SERVICE,
            &closed_port_url(),
        )
        .await;
        assert_eq!(verdict.outcome, Outcome::Fail, "HTTP 404 at /-/healthy");
        assert!(
            verdict.detail.contains("answered HTTP 404"),
            "{}",
            verdict.detail
        );

        let unlisted = [service(REDIS, RunState::Healthy, None)];
        let skipped =
            optional_service(&http, Some(&unlisted), &PROMETHEUS_SERVICE, &failing.url).await;
        assert_eq!(skipped.outcome, Outcome::Skip, "{}", skipped.detail);
        let healthy = FakeProbe::start("/-/healthy", StatusCode::OK).await;
        let found =
            optional_service(&http, Some(&unlisted), &PROMETHEUS_SERVICE, &healthy.url).await;
        assert_eq!(found.outcome, Outcome::Pass, "found at the fallback URL");
        let nothing = optional_service(&http, None, &PROMETHEUS_SERVICE, &closed_port_url()).await;
        assert_eq!(nothing.outcome, Outcome::Skip);
    }

    #[tokio::test]
    async fn no_gateway_fails_its_checks() {
        let report = checklist(&args(&closed_port_url()), no_stack(), false)
            .await
            .unwrap();
        assert_eq!(report.counts().passed, 0);
        assert_eq!(report.counts().failed, 4, "{:?}", report.results());
    }

    #[test]
    fn services_up_needs_the_core_services() {
        let mut status: Vec<ServiceStatus> = CORE_SERVICES
            .iter()
            .map(|n| service(n, RunState::Healthy, None))
            .collect();
        status.push(service("chaos_monkey", RunState::Stopped, None));
        assert_eq!(services_up(&status).outcome, Outcome::Pass);
        status[1].state = RunState::Stopped;
        let verdict = services_up(&status);
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict.detail.contains("llm_service_1 stopped"),
            "{}",
            verdict.detail
        );
    }

    #[test]
    fn services_up_needs_redis_and_the_secondary_only_in_a_stack_that_has_them() {
        for optional in IF_LISTED {
            let mut status: Vec<ServiceStatus> = CORE_SERVICES
                .iter()
                .filter(|n| **n != optional)
                .map(|n| service(n, RunState::Healthy, None))
                .collect();
            assert_eq!(
                services_up(&status).outcome,
                Outcome::Pass,
                "no {optional} listed"
            );
            status.push(service(optional, RunState::Stopped, None));
            let verdict = services_up(&status);
            assert_eq!(verdict.outcome, Outcome::Fail);
            assert!(
                verdict.detail.contains(&format!("{optional} stopped")),
                "{}",
                verdict.detail
            );
        }
    }
}
