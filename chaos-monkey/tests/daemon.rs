//! The daemon against a real llm-service: a fault appears, and SIGTERM rolls it back; with a
//! `CHAOS_TOKEN`, it sends the token as a bearer token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use test_support::LlmService;
use tokio::process::Command;

/// The faults in place, read with `token` as a bearer token when given.
async fn faults(url: &str, token: Option<&str>) -> Vec<serde_json::Value> {
    let mut request = reqwest::Client::new().get(format!("{url}/chaos/faults"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "the fault list");
    let body: serde_json::Value = response.json().await.unwrap();
    body.get("faults")
        .and_then(|f| f.as_array())
        .or_else(|| body.as_array())
        .cloned()
        .unwrap_or_default()
}

/// Runs the daemon (with `CHAOS_TOKEN` = `token` when given) against `url` until it has
/// injected two faults, then stops it with SIGTERM and checks that it rolled them back.
async fn two_rounds_then_sigterm(url: &str, token: Option<&str>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaos-monkey"));
    command
        .env_remove("CHAOS_TOKEN")
        .env("TARGET_SERVICES", url)
        .env("CHAOS_INTERVAL", "0.2")
        .env("FAILURE_PROBABILITY", "1")
        .env("CHAOS_DURATION", "30")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("CHAOS_TOKEN", token);
    }
    let mut monkey = command.spawn().unwrap();

    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(5) && seen.len() < 2 {
        seen = faults(url, token).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 2, "a fault every round: {seen:?}");
    assert!(
        seen.iter().all(|f| f["duration_s"] == 30.0),
        "each fault carries its duration: {seen:?}"
    );

    let pid = monkey.id().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), monkey.wait())
        .await
        .expect("the monkey exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        faults(url, token).await,
        Vec::<serde_json::Value>::new(),
        "rolled back"
    );
}

#[tokio::test]
async fn the_daemon_injects_faults_that_expire_and_rolls_them_back_on_sigterm() {
    let llm = LlmService::builder()
        .env("SERVICE_ID", format!("chaos-test-{}", std::process::id()))
        .start()
        .await;
    two_rounds_then_sigterm(&llm.url, None).await;
}

#[tokio::test]
async fn with_a_chaos_token_the_daemon_injects_and_rolls_back_as_a_bearer() {
    let llm = LlmService::builder()
        .env(
            "SERVICE_ID",
            format!("chaos-token-test-{}", std::process::id()),
        )
        .chaos_token("s3cret")
        .start()
        .await;
    two_rounds_then_sigterm(&llm.url, Some("s3cret")).await;
    let lines = llm.logs().settled().await;
    assert!(
        !lines.iter().any(|line| line.contains("s3cret")),
        "the token is never logged: {lines:#?}"
    );
}

#[tokio::test]
async fn no_targets_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos-monkey"))
        .env("TARGET_SERVICES", "")
        .env("LOG_FORMAT", "pretty")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("TARGET_SERVICES"), "{text}");
}
