//! The suite's orchestration against an in-process fake stack ([`fake`]): destructive
//! checks restore what they broke — also when they fail — and report what they saw.

pub mod fake;
mod report;
pub mod wire;

use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser as _;

use self::fake::FakeGateway;
use super::checks::{breaker, discovery, fallback, health};
use super::client::{GatewayClient, LlmClient, http_client};
use super::context::{Ctx, CtxParts, Settings};
use super::report::{Counts, Outcome};
use super::stack::{ComposeEngine, ControllerKind, Stack};
use super::{INTERRUPTED, SuiteArgs, exit_status, interrupted_note, open_stack};

/// A context on the fake stack, at steady state, with short waits.
async fn ctx_on(gateway: &FakeGateway) -> Ctx {
    let http = http_client().unwrap();
    let mut ctx = Ctx::new(CtxParts {
        http: http.clone(),
        gateway: GatewayClient::new(http.clone(), &gateway.url),
        llm: LlmClient::new(http),
        stack: Some(Stack {
            controller: Box::new(gateway.controller()),
        }),
        no_stack: String::new(),
        settings: Settings {
            steady_timeout: Duration::from_secs(2),
            change_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(20),
            recovery_default: Duration::from_secs(1),
            ..Settings::default()
        },
        only: None,
        echo: false,
    });
    let steady = ctx.wait_steady().await.unwrap();
    let status = ctx.status().await.unwrap();
    ctx.set_instances(&steady, &status);
    ctx
}

fn outcomes(ctx: &Ctx) -> Vec<(String, Outcome)> {
    ctx.report()
        .results()
        .iter()
        .map(|r| (r.name.clone(), r.verdict.outcome))
        .collect()
}

fn outcome(ctx: &Ctx, name: &str) -> Option<Outcome> {
    outcomes(ctx)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, o)| o)
}

#[tokio::test]
async fn a_failed_fallback_check_still_starts_the_stopped_services_again() {
    let gateway = FakeGateway::start().await;
    gateway.state.fallback_broken.store(true, Ordering::Relaxed);
    let ctx = ctx_on(&gateway).await;

    fallback::run(&ctx).await;

    assert_eq!(
        outcome(&ctx, fallback::CACHED),
        Some(Outcome::Fail),
        "{:?}",
        outcomes(&ctx)
    );
    assert_eq!(outcome(&ctx, fallback::TEMPLATE), Some(Outcome::Fail));
    assert_eq!(
        outcome(&ctx, fallback::LOGGED),
        Some(Outcome::Skip),
        "the fake stack keeps no log"
    );
    assert_eq!(
        outcome(&ctx, fallback::SECONDARY),
        Some(Outcome::Skip),
        "no secondary tier in this stack"
    );
    assert_eq!(
        gateway.state.calls(),
        [
            "stop llm_service_1",
            "stop llm_service_2",
            "start llm_service_1",
            "start llm_service_2",
            "reset breaker",
        ],
        "both stopped, then both started and the breaker reset by the restore"
    );
    assert!(gateway.state.stopped().is_empty(), "nothing left stopped");
    assert!(!ctx.is_disturbed());
    assert_eq!(
        outcome(&ctx, fallback::RECOVERED),
        Some(Outcome::Pass),
        "the instances serve after the restore"
    );
    assert!(
        !outcomes(&ctx)
            .iter()
            .any(|(n, _)| n.starts_with("restore after")),
        "the restore itself succeeded: {:?}",
        outcomes(&ctx)
    );
}

#[tokio::test]
async fn the_fallback_checks_pass_on_a_gateway_that_falls_back() {
    let gateway = FakeGateway::start().await;
    let ctx = ctx_on(&gateway).await;

    fallback::run(&ctx).await;

    assert_eq!(
        outcome(&ctx, fallback::CACHED),
        Some(Outcome::Pass),
        "{:?}",
        outcomes(&ctx)
    );
    assert_eq!(outcome(&ctx, fallback::TEMPLATE), Some(Outcome::Pass));
    assert_eq!(
        ctx.fallback_times().len(),
        2,
        "both latencies kept for the SLA check"
    );
    assert!(gateway.state.stopped().is_empty());
}

#[tokio::test]
async fn the_secondary_tier_answers_while_the_primaries_are_down() {
    let gateway = FakeGateway::start().await;
    gateway.state.secondary.store(true, Ordering::Relaxed);
    let ctx = ctx_on(&gateway).await;
    assert_eq!(ctx.baseline, 3, "the secondary counts as available");

    fallback::run(&ctx).await;

    let results = ctx.report().results().to_vec();
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, fallback::NAMES, "each check once, in order");
    let secondary = &results[0].verdict;
    assert_eq!(secondary.outcome, Outcome::Pass, "{}", secondary.detail);
    assert!(
        secondary.detail.starts_with(
            "served by llm_service_3, fallback_type secondary, reason no_services_available"
        ) && secondary.detail.contains("try 1 of at most 3"),
        "{}",
        secondary.detail
    );
    for name in [fallback::CACHED, fallback::TEMPLATE, fallback::RECOVERED] {
        assert_eq!(
            outcome(&ctx, name),
            Some(Outcome::Pass),
            "{name}: {results:#?}"
        );
    }
    assert_eq!(
        ctx.fallback_times().len(),
        2,
        "the cache and template latencies only: the secondary tier has no 1 s SLA"
    );
    assert_eq!(
        gateway.state.calls(),
        [
            "stop llm_service_1",
            "stop llm_service_2",
            "stop llm_service_3",
            "start llm_service_1",
            "start llm_service_2",
            "start llm_service_3",
            "reset breaker",
        ],
        "the primaries, then the secondary, stopped; all three started again"
    );
    assert!(gateway.state.stopped().is_empty());
    assert!(!ctx.is_disturbed());
}

#[tokio::test]
async fn a_secondary_that_cannot_answer_fails_its_check_and_the_cache_and_template_are_graded_still()
 {
    let gateway = FakeGateway::start().await;
    gateway.state.secondary.store(true, Ordering::Relaxed);
    let ctx = ctx_on(&gateway).await;
    gateway.state.fault("llm_service_3");

    fallback::run(&ctx).await;

    let secondary = ctx
        .report()
        .results()
        .iter()
        .find(|r| r.name == fallback::SECONDARY)
        .map(|r| r.verdict.clone())
        .unwrap();
    assert_eq!(secondary.outcome, Outcome::Fail);
    assert!(
        secondary.detail.starts_with(
            "no answer from the secondary tier (llm_service_3) in 3 tries: template answer \
             served by fallback_manager"
        ),
        "{}",
        secondary.detail
    );
    assert_eq!(outcome(&ctx, fallback::CACHED), Some(Outcome::Pass));
    assert_eq!(outcome(&ctx, fallback::TEMPLATE), Some(Outcome::Pass));
    assert!(gateway.state.stopped().is_empty(), "all started again");
}

#[tokio::test]
async fn a_restore_that_cannot_start_a_service_is_a_failed_check() {
    let gateway = FakeGateway::start().await;
    let ctx = ctx_on(&gateway).await;
    gateway.state.start_fails.store(true, Ordering::Relaxed);

    fallback::run(&ctx).await;

    assert_eq!(
        outcome(&ctx, "restore after fallback"),
        Some(Outcome::Fail),
        "{:?}",
        outcomes(&ctx)
    );
    assert!(
        ctx.is_disturbed(),
        "still remembered, for the final restore"
    );
    gateway.state.start_fails.store(false, Ordering::Relaxed);
    ctx.restore(super::report::Category::Setup, "the grading")
        .await;
    assert!(!ctx.is_disturbed());
    assert!(gateway.state.stopped().is_empty());
}

#[tokio::test]
async fn service_discovery_sees_an_instance_leave_and_rejoin() {
    let gateway = FakeGateway::start().await;
    let ctx = ctx_on(&gateway).await;

    discovery::run(&ctx).await;

    assert_eq!(
        outcomes(&ctx),
        [
            (discovery::REGISTERED.to_owned(), Outcome::Pass),
            (discovery::BALANCED.to_owned(), Outcome::Pass),
            (discovery::LEAVES.to_owned(), Outcome::Pass),
            (discovery::REJOINS.to_owned(), Outcome::Pass),
        ]
    );
    assert_eq!(
        gateway.state.calls(),
        ["stop llm_service_1", "start llm_service_1", "reset breaker"]
    );
}

#[tokio::test]
async fn the_breaker_opens_half_opens_and_closes_and_faults_are_cleared() {
    let gateway = FakeGateway::start().await;
    let ctx = ctx_on(&gateway).await;

    breaker::run(&ctx).await;

    let all_passed = outcomes(&ctx).iter().all(|(_, o)| *o == Outcome::Pass);
    assert!(all_passed, "{:#?}", ctx.report().results());
    assert_eq!(outcomes(&ctx).len(), breaker::NAMES.len());
    let seed = ctx
        .report()
        .results()
        .iter()
        .find(|r| r.name == breaker::SEED_VARIANT)
        .map(|r| r.verdict.detail.clone())
        .unwrap();
    assert!(
        seed.contains("deviation: invalid input is the client's fault (see README)"),
        "{seed}"
    );
    assert!(gateway.state.faulted().is_empty(), "faults cleared");
    assert!(!ctx.is_disturbed());
}

#[tokio::test]
async fn only_runs_the_matching_checks() {
    let gateway = FakeGateway::start().await;
    let http = http_client().unwrap();
    let mut ctx = Ctx::new(CtxParts {
        http: http.clone(),
        gateway: GatewayClient::new(http.clone(), &gateway.url),
        llm: LlmClient::new(http),
        stack: None,
        no_stack: "none in this test".into(),
        settings: Settings::default(),
        only: Some("LOAD BALANCING".into()),
        echo: false,
    });
    let steady = ctx.wait_steady().await.unwrap();
    ctx.set_instances(&steady, &[]);

    discovery::run(&ctx).await;
    fallback::run(&ctx).await;

    assert_eq!(
        outcomes(&ctx),
        [(discovery::BALANCED.to_owned(), Outcome::Pass)]
    );
    assert!(gateway.state.calls().is_empty(), "nothing stopped");
}

#[tokio::test]
async fn without_a_stack_the_destructive_checks_are_skipped() {
    let gateway = FakeGateway::start().await;
    let mut ctx = ctx_on(&gateway).await;
    ctx.stack = None;
    ctx.no_stack = "no stack.json".into();

    fallback::run(&ctx).await;

    let skipped = outcomes(&ctx).iter().all(|(_, o)| *o == Outcome::Skip);
    assert!(skipped, "{:?}", outcomes(&ctx));
    assert_eq!(outcomes(&ctx).len(), fallback::NAMES.len());
    assert!(gateway.state.calls().is_empty());
}

#[tokio::test]
async fn redis_down_needs_the_instances_to_keep_serving() {
    let gateway = FakeGateway::start().await;
    let ctx = ctx_on(&gateway).await;

    health::run(&ctx).await;

    assert_eq!(
        outcome(&ctx, health::REDIS_DOWN),
        Some(Outcome::Pass),
        "{:#?}",
        ctx.report().results()
    );
    assert_eq!(outcome(&ctx, health::REDIS_BACK), Some(Outcome::Pass));
    assert!(gateway.state.stopped().is_empty(), "Redis started again");
}

#[tokio::test]
async fn redis_down_answered_from_templates_is_not_traffic_kept_flowing() {
    let gateway = FakeGateway::start().await;
    let ctx = ctx_on(&gateway).await;
    gateway.state.template_only.store(true, Ordering::Relaxed);

    health::run(&ctx).await;

    let down = ctx
        .report()
        .results()
        .iter()
        .find(|r| r.name == health::REDIS_DOWN)
        .map(|r| r.verdict.clone())
        .unwrap();
    assert_eq!(down.outcome, Outcome::Fail, "{}", down.detail);
    assert!(
        down.detail.contains("10/10 answered 200")
            && down.detail.contains("10 by fallback (at most 1 allowed)"),
        "every answer a 200, all from the template: {}",
        down.detail
    );
    assert!(gateway.state.stopped().is_empty(), "Redis started again");
}

fn try_suite_args(cli: &[&str]) -> Result<SuiteArgs, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        suite: SuiteArgs,
    }
    let argv = std::iter::once("suite").chain(cli.iter().copied());
    Cli::try_parse_from(argv).map(|cli| cli.suite)
}

fn suite_args(cli: &[&str]) -> SuiteArgs {
    try_suite_args(cli).unwrap()
}

#[tokio::test]
async fn no_run_directory_is_a_failed_setup_check_saying_how_to_fix_it() {
    let args = suite_args(&["--lab-dir", "/nonexistent/resilience-tests-lab"]);
    assert_eq!(args.stack.controller, ControllerKind::Local);
    assert!(!args.no_controller);

    let opened = open_stack(&args).await;

    assert!(opened.stack.is_none());
    let setup = opened.setup.unwrap();
    assert_eq!(setup.outcome, Outcome::Fail);
    for hint in ["`lab up`", "--lab-dir", "LAB_DIR", "--no-controller"] {
        assert!(setup.detail.contains(hint), "{hint}: {}", setup.detail);
    }
    assert!(
        setup.detail.contains("/nonexistent/resilience-tests-lab"),
        "{}",
        setup.detail
    );
}

#[tokio::test]
async fn no_controller_grades_without_a_stack_and_without_a_failure() {
    let args = suite_args(&[
        "--no-controller",
        "--lab-dir",
        "/nonexistent/resilience-tests-lab",
    ]);

    let opened = open_stack(&args).await;

    assert!(opened.stack.is_none());
    assert!(opened.setup.is_none(), "skipping is what was asked for");
    assert_eq!(opened.no_stack, "--no-controller");
}

#[test]
fn the_compose_engine_is_a_setting_of_the_compose_controller() {
    let args = suite_args(&["--controller", "compose", "--compose-engine", "podman"]);
    assert_eq!(args.stack.controller, ControllerKind::Compose);
    assert_eq!(args.stack.compose_engine, ComposeEngine::Podman);
    let docker = suite_args(&["--controller", "compose", "--compose-engine", "docker"]);
    assert_eq!(docker.stack.compose_engine, ComposeEngine::Docker);
    if std::env::var_os("COMPOSE_ENGINE").is_none() {
        assert_eq!(suite_args(&[]).stack.compose_engine, ComposeEngine::Auto);
    }
    let error = try_suite_args(&["--compose-engine", "lxc"]).unwrap_err();
    assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
}

#[tokio::test]
async fn the_compose_engine_picks_the_command_the_compose_controller_runs() {
    let file = "/nonexistent/resilience-tests/compose.yml";
    let args = suite_args(&[
        "--controller",
        "compose",
        "--compose-engine",
        "podman",
        "--compose-file",
        file,
    ]);

    let opened = open_stack(&args).await;

    assert!(opened.stack.is_none());
    let expected = format!(
        "compose controller (podman-compose, chosen): podman-compose -f {file} ps \
         --format json: "
    );
    assert!(
        opened.no_stack.starts_with(&expected),
        "{}",
        opened.no_stack
    );
    let setup = opened.setup.unwrap();
    assert_eq!(setup.outcome, Outcome::Fail);
}

#[test]
fn an_interrupted_run_exits_130_whatever_the_checks_that_ran_said() {
    let clean = Counts {
        passed: 12,
        failed: 0,
        skipped: 0,
    };
    assert_eq!(exit_status(clean, false), 0);
    assert_eq!(exit_status(clean, true), INTERRUPTED);
    let failed = Counts { failed: 1, ..clean };
    assert_eq!(exit_status(failed, false), 1);
    assert_eq!(exit_status(failed, true), INTERRUPTED);
    let note = interrupted_note(clean);
    assert!(
        note.contains("interrupted") && note.contains("12 check(s)"),
        "{note}"
    );
    assert_eq!(
        clean.summary_line(),
        "12 passed, 0 failed",
        "the last line keeps its format"
    );
}
