//! `chaos-monkey run` against a small real stack (its own redis-server, two llm-services,
//! a gateway), controlled through a `lab`-style run directory: each experiment's effect
//! while it runs, its rollback, the hypothesis that blocks an injection, the guard that
//! aborts one, and the journal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod stack;

use std::time::{Duration, Instant};

use llm_api::envelope::GenerateSuccess;
use llm_api::fault::{FaultKind, FaultSpec, FaultView};
use llm_api::gateway::{GatewayHealth, HealthStatus};
use llm_api::generate::GenerateRequest;
use serde_json::Value;
use stack_control::{Controller, RunState};
use tokio::process::Command;

use self::stack::{Stack, eventually, finish, kinds};

#[tokio::test]
async fn list_names_every_experiment() {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos-monkey"))
        .arg("list")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for name in [
        "latency",
        "errors",
        "hang",
        "reset",
        "cpu",
        "memory",
        "kill",
        "pause",
        "redis-outage",
        "network-latency",
        "partition",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
}

#[tokio::test]
async fn experiments_take_effect_roll_back_and_are_journaled() {
    let stack = Stack::up().await;

    // Fault-API experiments: the fault is in place while the run lasts, gone afterwards.
    let history = stack.dir.join("history.sqlite3");
    let history_url = format!("sqlite://{}", history.display());
    for experiment in ["errors", "latency", "hang", "reset", "cpu", "memory"] {
        // The first one is also recorded in a history database.
        let extra: &[&str] = if experiment == "errors" {
            &["--database-url", &history_url]
        } else {
            &[]
        };
        let (child, report) = stack.start(experiment, "llm_service_1", extra);
        assert!(
            eventually(|| async { !stack.faults().await.is_empty() }).await,
            "{experiment}: no fault in place"
        );
        if experiment == "errors" {
            let status = reqwest::Client::new()
                .post(format!("{}/generate", stack.llm1))
                .json(&GenerateRequest {
                    max_tokens: Some(4),
                    ..GenerateRequest::new("direct")
                })
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 503, "the target fails while the experiment runs");
        }
        let (code, text, journal) = finish(child, &report).await;
        assert_eq!(code, 0, "{experiment}:\n{text}");
        assert!(stack.faults().await.is_empty(), "{experiment}: rolled back");
        assert_eq!(journal["outcome"], "completed", "{experiment}");
        assert_eq!(
            kinds(&journal)
                .iter()
                .filter(|k| !k.starts_with("hypothesis:after"))
                .cloned()
                .collect::<Vec<_>>(),
            ["hypothesis:before", "action:inject", "rollback:"],
            "{experiment}"
        );
        let guard_probes = journal["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["phase"] == "guard")
            .count();
        assert!(
            guard_probes >= 3,
            "{experiment}: the guard watched ({guard_probes} probes)"
        );
        assert!(
            text.contains("completed") || text.contains("Completed"),
            "{text}"
        );
        if experiment == "errors" {
            let db = sqlx::SqlitePool::connect(&history_url).await.unwrap();
            let (name, target, outcome, recorded): (String, String, String, String) =
                sqlx::query_as("SELECT name, target, outcome, journal FROM chaos_experiments")
                    .fetch_one(&db)
                    .await
                    .unwrap();
            assert_eq!(
                (name.as_str(), target.as_str(), outcome.as_str()),
                ("errors", "llm_service_1", "completed")
            );
            let recorded: Value = serde_json::from_str(&recorded).unwrap();
            assert_eq!(
                recorded["events"], journal["events"],
                "the whole journal, as in the report"
            );
            db.close().await;
        }
    }

    // SIGTERM (or Ctrl-C) mid-run: rolled back at once, exit 130.
    let (child, report) = stack.start("errors", "llm_service_1", &["--duration", "60"]);
    assert!(eventually(|| async { !stack.faults().await.is_empty() }).await);
    let pid = child.id().unwrap().to_string();
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let (code, text, journal) = finish(child, &report).await;
    assert_eq!(code, 130, "{text}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "stopped at once: {:?}",
        sent.elapsed()
    );
    assert_eq!(journal["outcome"], "interrupted");
    assert!(stack.faults().await.is_empty(), "rolled back on SIGTERM");

    // Network experiments, through the fault proxy in front of llm_service_1.
    let api = stack.proxy_api.clone();
    let (child, report) = stack.start("partition", "llm1", &["--proxy-api", &api]);
    let unreachable = eventually(|| async {
        reqwest::get(format!("{}/health", stack.proxied))
            .await
            .is_err()
    })
    .await;
    assert!(
        unreachable,
        "partition: llm_service_1 still reachable through the proxy"
    );
    let (code, text, journal) = finish(child, &report).await;
    assert_eq!(code, 0, "partition:\n{text}");
    assert_eq!(journal["outcome"], "completed");
    assert!(
        reqwest::get(format!("{}/health", stack.proxied))
            .await
            .is_ok(),
        "healed"
    );

    let (child, report) = stack.start("network-latency", "llm1", &["--proxy-api", &api]);
    let slow = eventually(|| async {
        let started = Instant::now();
        reqwest::get(format!("{}/health", stack.proxied))
            .await
            .is_ok()
            && started.elapsed() >= Duration::from_millis(900)
    })
    .await;
    assert!(slow, "network-latency: no added latency through the proxy");
    let (code, text, _) = finish(child, &report).await;
    assert_eq!(code, 0, "network-latency:\n{text}");
    let started = Instant::now();
    reqwest::get(format!("{}/health", stack.proxied))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "toxic removed"
    );

    // Process experiments, through the run directory's controller.
    // Each fault held 5 s: a loaded machine's polling must not miss it.
    for (experiment, during) in [("kill", RunState::Stopped), ("pause", RunState::Paused)] {
        let (child, report) = stack.start(experiment, "llm_service_1", &["--duration", "5"]);
        let seen = eventually(|| async { stack.state("llm_service_1").await == during }).await;
        let (code, text, journal) = finish(child, &report).await;
        assert!(
            seen,
            "{experiment}: llm_service_1 never {during:?}; the experiment exited {code}:\n{text}"
        );
        assert_eq!(code, 0, "{experiment}:\n{text}");
        assert_eq!(
            stack.state("llm_service_1").await,
            RunState::Healthy,
            "{experiment}"
        );
        assert_eq!(journal["outcome"], "completed");
    }

    // Redis: only the stack's own, and only as `redis`.
    let (child, report) = stack.start("redis-outage", "redis", &[]);
    assert!(eventually(|| async { stack.state("redis").await == RunState::Stopped }).await);
    let (code, text, _) = finish(child, &report).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(stack.state("redis").await, RunState::Healthy);
    let (child, report) = stack.start("redis-outage", "llm_service_1", &[]);
    let (code, text, _) = finish(child, &report).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("only the stack's own Redis"), "{text}");

    // A hypothesis that does not hold: nothing is injected. (Both instances already fail
    // on purpose, so every answer is a fallback, which this run refuses.)
    let mut manual = Vec::new();
    for url in [stack.llm1.clone()] {
        let spec = FaultSpec::new(FaultKind::Error {
            status: 503,
            code: None,
            message: None,
            retry_after_s: None,
        })
        .for_seconds(60.0);
        let fault: FaultView = reqwest::Client::new()
            .post(format!("{url}/chaos/faults"))
            .json(&spec)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        manual.push(fault.id);
    }
    stack.stack.stop("llm_service_2").await.unwrap();
    let (child, report) = stack.start(
        "latency",
        "llm_service_1",
        &["--max-fallback-rate", "0", "--settle", "0"],
    );
    let (code, text, journal) = finish(child, &report).await;
    assert_eq!(code, 5, "{text}");
    assert_eq!(journal["outcome"], "not_injected");
    assert!(
        !kinds(&journal).iter().any(|k| k.starts_with("action")),
        "{journal}"
    );
    let left: Vec<String> = stack.faults().await.into_iter().map(|f| f.id).collect();
    assert_eq!(left, manual, "only the fault put there by hand");
    reqwest::Client::new()
        .delete(format!("{}/chaos/faults", stack.llm1))
        .send()
        .await
        .unwrap();

    // The guard: with llm_service_2 down, errors on llm_service_1 make every answer a
    // fallback; the run aborts and rolls back within a second or two. (First the gateway
    // gets over the faults above: its breakers close after their 2 s.)
    let healthy = eventually(|| async {
        let health: Option<GatewayHealth> =
            match reqwest::get(format!("{}/health", stack.gateway)).await {
                Ok(response) => response.json().await.ok(),
                Err(_) => None,
            };
        let warm_up = GenerateRequest {
            max_tokens: Some(4),
            ..GenerateRequest::new("warm up")
        };
        let answer: Option<GenerateSuccess> = match reqwest::Client::new()
            .post(format!("{}/generate", stack.gateway))
            .json(&warm_up)
            .send()
            .await
        {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        health.is_some_and(|h| h.overall_status == HealthStatus::Healthy)
            && answer.is_some_and(|a| !a.data.fallback_used)
    })
    .await;
    assert!(healthy, "the gateway recovers from the earlier faults");
    let (child, report) = stack.start(
        "errors",
        "llm_service_1",
        &["--duration", "30", "--max-fallback-rate", "0.3"],
    );
    let (code, text, journal) = finish(child, &report).await;
    assert_eq!(code, 3, "{text}");
    assert_eq!(journal["outcome"], "aborted");
    let at = |kind: &str| {
        journal["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["at_ms"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("no {kind} in {journal}"))
    };
    let (inject, abort, rollback) = (at("action"), at("abort"), at("rollback"));
    assert!(
        abort - inject < 2500,
        "abort {} ms after the injection",
        abort - inject
    );
    assert!(
        rollback - abort < 1000,
        "rollback {} ms after the abort",
        rollback - abort
    );
    assert!(stack.faults().await.is_empty(), "rolled back");
    assert!(
        journal["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "abort" && e["detail"].as_str().unwrap().contains("fallback"))
    );
    stack.stack.start("llm_service_2").await.unwrap();
}
