//! The daemon against a real llm-service: a fault appears, and SIGTERM rolls it back.
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

async fn faults(url: &str) -> Vec<serde_json::Value> {
    let body: serde_json::Value = reqwest::get(format!("{url}/chaos/faults"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body.get("faults")
        .and_then(|f| f.as_array())
        .or_else(|| body.as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_daemon_injects_faults_that_expire_and_rolls_them_back_on_sigterm() {
    let llm = LlmService::builder()
        .env("SERVICE_ID", format!("chaos-test-{}", std::process::id()))
        .start()
        .await;
    let url = llm.url.clone();
    let mut monkey = Command::new(env!("CARGO_BIN_EXE_chaos-monkey"))
        .env("TARGET_SERVICES", &url)
        .env("CHAOS_INTERVAL", "0.2")
        .env("FAILURE_PROBABILITY", "1")
        .env("CHAOS_DURATION", "30")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(5) && seen.len() < 2 {
        seen = faults(&url).await;
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
        faults(&url).await,
        Vec::<serde_json::Value>::new(),
        "rolled back"
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
