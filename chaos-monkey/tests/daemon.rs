//! The daemon against a real llm-service: a fault appears, and SIGTERM rolls it back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts an llm-service on a free port; returns it and its base URL.
async fn llm_service() -> (Child, String) {
    let binary =
        std::path::Path::new(env!("CARGO_BIN_EXE_chaos-monkey")).with_file_name("llm-service");
    assert!(
        binary.is_file(),
        "build the llm-service first (cargo build -p llm-service): {}",
        binary.display()
    );
    let mut child = Command::new(binary)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("SERVICE_ID", format!("chaos-test-{}", std::process::id()))
        .env("SIM_FAILURE_RATE", "0")
        .env("SIM_MIN_LATENCY_MS", "0")
        .env("SIM_MAX_LATENCY_MS", "0")
        .env("LOG_FORMAT", "pretty")
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(at) = line.find("url=http://") {
                return line[at + 4..].split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the llm-service ended without a listening line");
    })
    .await
    .expect("the llm-service listens");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

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
    let (_llm, url) = llm_service().await;
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
