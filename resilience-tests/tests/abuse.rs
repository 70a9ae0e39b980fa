//! `resilience-tests abuse` against the real gateway and llm-service, at a tiny size: the
//! report's structure, the attacks that do not depend on issue 16's server-side defences
//! (malformed JSON), the target's process found for RSS, and the refusal of a host that is
//! not loopback.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use test_support::{Gateway, LlmService, fail};

/// The whole tiny run may take this long.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs the binary under test with `args`, within [`RUN_LIMIT`].
async fn abuse(args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_resilience-tests"));
    command.arg("abuse").args(args).kill_on_drop(true);
    match tokio::time::timeout(RUN_LIMIT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => fail(format!("cannot run resilience-tests: {error}")),
        Err(_) => fail(format!(
            "resilience-tests abuse ran longer than {RUN_LIMIT:?}"
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_run_reports_every_attack_and_malformed_input_passes() {
    let llm = LlmService::builder().latency(1, 5).start().await;
    let gateway = Gateway::builder().upstreams(&[&llm]).start().await;
    let dir = std::env::temp_dir().join(test_support::unique_id("abuse"));
    if let Err(error) = std::fs::create_dir_all(&dir) {
        fail(format!("cannot create {}: {error}", dir.display()));
    }
    let json = dir.join("report.json");
    let json_arg = json.display().to_string();
    let output = abuse(&[
        "--target",
        gateway.url(),
        "--json",
        &json_arg,
        "--baseline",
        "1",
        "--rate",
        "10",
        "--header-timeout",
        "1",
        "--body-deadline",
        "1",
        "--slack",
        "1",
        "--slowloris",
        "2",
        "--slow-bodies",
        "2",
        "--h2-streams",
        "4",
        "--idle",
        "20",
        "--idle-hold",
        "1",
        "--idle-settle",
        "0",
        "--oversized",
        "2",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|error| {
        fail(format!(
            "no JSON report ({error}); stdout:\n{stdout}\nstderr:\n{stderr}"
        ))
    });
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| fail(format!("the report is not JSON: {error}\n{text}")));

    let names: Vec<&str> = report["attacks"]
        .as_array()
        .map(|attacks| attacks.iter().filter_map(|a| a["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "slowloris",
            "slow-bodies",
            "slow-h2",
            "idle",
            "oversized",
            "malformed",
            "headers"
        ],
        "{stdout}"
    );
    for attack in report["attacks"].as_array().into_iter().flatten() {
        let verdict = attack["verdict"].as_str().unwrap_or_default();
        assert!(verdict == "pass" || verdict == "fail", "{attack}");
        assert_eq!(
            verdict == "fail",
            attack["reasons"].as_array().is_some_and(|r| !r.is_empty()),
            "a failure says why, a pass has no reasons: {attack}"
        );
        assert!(attack["client"]["sent"].as_u64().is_some(), "{attack}");
        assert!(attack["figures"].is_object(), "{attack}");
    }
    let passed = report["passed"].as_u64().unwrap_or(u64::MAX);
    let failed = report["failed"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(passed + failed, 7, "{report}");
    assert_eq!(
        output.status.code(),
        Some(i32::from(failed > 0)),
        "exit code 1 exactly when an attack failed\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("abuse: {passed} passed, {failed} failed")),
        "{stdout}"
    );

    // The target's process is found from its listening socket.
    assert_eq!(
        report["rss_pid"].as_u64(),
        Some(u64::from(gateway.pid())),
        "{report}"
    );
    assert!(
        report["baseline_rss_mib"]
            .as_f64()
            .is_some_and(|mib| mib > 0.0)
    );
    assert!(
        report["baseline"]["success_pct"].as_f64() == Some(100.0),
        "{report}"
    );

    // Malformed input is today's gateway's strength: every case a 4xx JSON error.
    let malformed = report["attacks"]
        .as_array()
        .and_then(|attacks| attacks.iter().find(|a| a["name"] == "malformed"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(malformed["verdict"], "pass", "{malformed}");
    assert!(
        malformed["figures"]["cases"]
            .as_u64()
            .is_some_and(|n| n >= 15)
    );
    // The idle flood held its connections from a worker process.
    let idle = report["attacks"]
        .as_array()
        .and_then(|attacks| attacks.iter().find(|a| a["name"] == "idle"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(idle["figures"]["workers"], 1, "{idle}");
    assert!(
        idle["figures"]["connections_opened"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{idle}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_host_that_is_not_loopback_is_refused_without_the_owners_word() {
    // 192.0.2.1 is TEST-NET-1: never a real host; nothing is sent to it.
    let output = abuse(&["--target", "http://192.0.2.1:8000"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--i-own-this-host"), "{stderr}");
    assert!(output.stdout.is_empty());

    let https = abuse(&["--target", "https://127.0.0.1:8443"]).await;
    let stderr = String::from_utf8_lossy(&https.stderr);
    assert_eq!(https.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("http://"), "{stderr}");
}
