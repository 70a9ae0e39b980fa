//! `resilience-tests bench --quick` end to end with the debug gateway and llm-service: the
//! answer and template-fallback scenarios measured on every target, CPU and RSS read, and
//! every process it started (nginx's workers too) gone afterwards. Needs nginx and wrk,
//! which `scripts/test` installs.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use test_support::{binary, fail};

/// The whole quick run may take this long.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// `name` on PATH, or one of `fallbacks`.
fn tool(name: &str, fallbacks: &[&str]) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            fail(format!(
                "{name} is not installed and the benchmark test needs it: run `bash scripts/test` \
                 (it installs nginx-light and wrk as root) or apt-get install nginx-light wrk"
            ))
        })
}

/// Runs the binary under test's `bench` with `args`, within [`RUN_LIMIT`].
async fn bench(args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_resilience-tests"));
    command.arg("bench").args(args).kill_on_drop(true);
    match tokio::time::timeout(RUN_LIMIT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => fail(format!("cannot run resilience-tests: {error}")),
        Err(_) => fail(format!(
            "resilience-tests bench ran longer than {RUN_LIMIT:?}"
        )),
    }
}

/// The program process `pid` runs, when it is alive.
fn alive_program(pid: u64) -> Option<PathBuf> {
    Path::new(&format!("/proc/{pid}"))
        .exists()
        .then(|| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_run_measures_every_target_and_leaves_no_process_behind() {
    let nginx = tool("nginx", &["/usr/sbin/nginx"]);
    let wrk = tool("wrk", &[]);
    let dir = std::env::temp_dir().join(test_support::unique_id("bench"));
    let json = dir.join("bench.json");
    let args = [
        "--quick".to_owned(),
        "--scenarios".to_owned(),
        "answer,fallback-template".to_owned(),
        "--json".to_owned(),
        json.display().to_string(),
        "--work-dir".to_owned(),
        dir.join("work").display().to_string(),
        "--gateway-bin".to_owned(),
        binary("gateway").display().to_string(),
        "--llm-service-bin".to_owned(),
        binary("llm-service").display().to_string(),
        "--nginx".to_owned(),
        nginx.display().to_string(),
        "--wrk".to_owned(),
        wrk.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = bench(&args).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("targets"), "{stdout}");
    assert!(stdout.contains("MAX_CONCURRENT_REQUESTS=1024"), "{stdout}");
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| fail(format!("{}: {e}\n{stdout}\n{stderr}", json.display())));
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| fail(e));
    let rounds = report["rounds"].as_array().cloned().unwrap_or_default();
    assert!(
        report["scenario_errors"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{}",
        report["scenario_errors"]
    );

    for target in ["direct", "hop", "gateway"] {
        let of: Vec<&Value> = rounds
            .iter()
            .filter(|r| r["scenario"] == "answer" && r["target"] == target)
            .collect();
        // c=1 and c=16 with wrk, and the fixed rate.
        assert_eq!(of.len(), 3, "answer rounds of {target}: {of:#?}");
        for round in &of {
            assert!(round["requests"].as_u64().unwrap_or(0) > 0, "{round}");
            assert_eq!(round["errors"].as_u64(), Some(0), "{round}");
            assert!(round["rss_mib"].as_f64().unwrap_or(0.0) > 0.0, "{round}");
        }
        let cpu = of
            .iter()
            .filter_map(|r| r["cpu_us_per_request"].as_f64())
            .fold(0.0, f64::max);
        assert!(cpu > 0.0, "no CPU read for {target}: {of:#?}");
    }

    let template: Vec<&Value> = rounds
        .iter()
        .filter(|r| r["scenario"] == "fallback-template")
        .collect();
    assert_eq!(template.len(), 3, "{template:#?}");
    for round in &template {
        assert_eq!(round["target"], "gateway", "{round}");
        assert!(round["requests"].as_u64().unwrap_or(0) > 0, "{round}");
        assert_eq!(round["errors"].as_u64(), Some(0), "{round}");
        assert!(round["rss_mib"].as_f64().unwrap_or(0.0) > 0.0, "{round}");
    }
    let goals = report["targets"].as_array().cloned().unwrap_or_default();
    let template_goal = goals
        .iter()
        .find(|g| {
            g["goal"]
                .as_str()
                .is_some_and(|s| s.starts_with("fallback-template"))
        })
        .unwrap_or_else(|| fail(format!("no fallback-template goal: {goals:#?}")));
    assert_ne!(template_goal["verdict"], "not-run", "{template_goal}");
    let stream_goal = goals
        .iter()
        .find(|g| g["goal"].as_str().is_some_and(|s| s.starts_with("stream")))
        .unwrap_or_else(|| fail("no stream goal"));
    assert_eq!(stream_goal["verdict"], "not-run", "{stream_goal}");

    let servers = report["servers"].as_array().cloned().unwrap_or_default();
    assert_eq!(servers.len(), 6, "{servers:#?}");
    for server in &servers {
        let pids = server["pids"].as_array().cloned().unwrap_or_default();
        if server["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("nginx"))
        {
            assert!(pids.len() >= 2, "nginx's master and workers: {server}");
        }
        for pid in pids.iter().filter_map(Value::as_u64) {
            if let Some(program) = alive_program(pid) {
                let name = program.to_string_lossy();
                assert!(
                    !["nginx", "gateway", "llm-service"]
                        .iter()
                        .any(|p| name.ends_with(p)),
                    "{} (pid {pid}, {name}) outlived the bench",
                    server["name"]
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
