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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stack_control::local::{Health, LocalStack, ServiceSpec, StackFile, which};
use stack_control::{Controller, RunState};
use test_support::{binary, free_port};
use tokio::process::{Child, Command};

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A stack like `lab up`'s, fast and calm, in a run directory of its own.
struct Stack {
    dir: PathBuf,
    stack: LocalStack,
    gateway: String,
    llm1: String,
    /// llm_service_1 through the fault proxy (what the gateway uses).
    proxied: String,
    /// The fault proxy's API.
    proxy_api: String,
}

impl Stack {
    async fn up() -> Self {
        let dir = std::env::temp_dir().join(format!("chaos-exp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (redis, gw, p1, p2) = (free_port(), free_port(), free_port(), free_port());
        let (api, via) = (free_port(), free_port());
        let redis_url = format!("redis://127.0.0.1:{redis}");
        let llm = |name: &str, port: u16, advertised: u16| ServiceSpec {
            name: name.to_owned(),
            program: binary("llm-service"),
            args: Vec::new(),
            env: env(&[
                ("ADVERTISE_URL", format!("http://127.0.0.1:{advertised}")),
                ("PORT", port.to_string()),
                ("HOST", "127.0.0.1".into()),
                ("SERVICE_ID", name.into()),
                ("REDIS_URL", redis_url.clone()),
                ("SIM_MIN_LATENCY_MS", "0".into()),
                ("SIM_MAX_LATENCY_MS", "0".into()),
                ("SIM_FAILURE_RATE", "0".into()),
                ("REGISTRY_TTL_MS", "3000".into()),
            ]),
            port: Some(port),
            url: Some(format!("http://127.0.0.1:{port}")),
            health: Health::Http {
                url: format!("http://127.0.0.1:{port}/health"),
            },
        };
        let file = StackFile {
            base_port: gw,
            services: vec![
                ServiceSpec {
                    name: "redis".into(),
                    program: which(Path::new("redis-server")).expect("redis-server installed"),
                    args: [
                        "--port",
                        &redis.to_string(),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                    env: BTreeMap::new(),
                    port: Some(redis),
                    url: Some(redis_url.clone()),
                    health: Health::Redis {
                        url: redis_url.clone(),
                    },
                },
                ServiceSpec {
                    name: "chaos_proxy".into(),
                    program: binary("chaos-monkey"),
                    args: vec![
                        "proxy".into(),
                        "--listen".into(),
                        format!("127.0.0.1:{api}"),
                        "--proxy".into(),
                        format!("llm1=127.0.0.1:{via}=127.0.0.1:{p1}"),
                    ],
                    env: BTreeMap::new(),
                    port: Some(api),
                    url: Some(format!("http://127.0.0.1:{api}")),
                    health: Health::Http {
                        url: format!("http://127.0.0.1:{api}/version"),
                    },
                },
                llm("llm_service_1", p1, via),
                llm("llm_service_2", p2, p2),
                ServiceSpec {
                    name: "api_gateway".into(),
                    program: binary("gateway"),
                    args: Vec::new(),
                    env: env(&[
                        ("PORT", gw.to_string()),
                        ("HOST", "127.0.0.1".into()),
                        ("REDIS_URL", redis_url.clone()),
                        ("HEALTH_CHECK_INTERVAL_MS", "200".into()),
                        ("DISCOVERY_REFRESH_MS", "200".into()),
                        ("PER_TRY_TIMEOUT_MS", "1000".into()),
                        ("REQUEST_TIMEOUT", "5".into()),
                        ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "2".into()),
                    ]),
                    port: Some(gw),
                    url: Some(format!("http://127.0.0.1:{gw}")),
                    health: Health::Http {
                        url: format!("http://127.0.0.1:{gw}/ready"),
                    },
                },
            ],
        };
        let stack = LocalStack::create(&dir, file).unwrap();
        stack.up().await.unwrap();
        Self {
            dir,
            stack,
            gateway: format!("http://127.0.0.1:{gw}"),
            llm1: format!("http://127.0.0.1:{p1}"),
            proxied: format!("http://127.0.0.1:{via}"),
            proxy_api: format!("http://127.0.0.1:{api}"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chaos-monkey"));
        command
            .args(args)
            .args(["--gateway", &self.gateway])
            .env("LAB_DIR", &self.dir)
            .env("LOG_FORMAT", "pretty")
            .kill_on_drop(true);
        command
    }

    /// `chaos-monkey run EXPERIMENT --target TARGET …` in the background, with its journal.
    fn start(&self, experiment: &str, target: &str, extra: &[&str]) -> (Child, PathBuf) {
        let report = self.dir.join(format!("{experiment}-{target}.json"));
        let report_arg = report.display().to_string();
        let mut args = vec![
            "run",
            experiment,
            "--target",
            target,
            "--report",
            &report_arg,
        ];
        for (flag, default) in [("--duration", "2"), ("--settle", "15")] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend_from_slice(extra);
        let child = self
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, report)
    }

    async fn state(&self, name: &str) -> RunState {
        self.stack
            .status()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .state
    }

    async fn faults(&self) -> Vec<Value> {
        let body: Value = reqwest::get(format!("{}/chaos/faults", self.llm1))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["faults"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Down on a runtime of its own (this one is the test's, busy dropping us).
        let stack = self.stack.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = runtime.block_on(stack.down());
            }
        })
        .join();
    }
}

/// Waits for the experiment to end; its exit code, its output and its journal.
async fn finish(child: Child, report: &Path) -> (i32, String, Value) {
    let output: Output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the experiment ends")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let journal = std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), text, journal)
}

fn kinds(journal: &Value) -> Vec<String> {
    journal["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] != "probe")
        .map(|e| {
            format!(
                "{}:{}",
                e["kind"].as_str().unwrap(),
                e["phase"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Polls `probe` every 50 ms for up to 10 s until it holds.
async fn eventually<F, Fut>(mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

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
    for experiment in ["errors", "latency", "hang", "reset", "cpu", "memory"] {
        let (child, report) = stack.start(experiment, "llm_service_1", &[]);
        assert!(
            eventually(|| async { !stack.faults().await.is_empty() }).await,
            "{experiment}: no fault in place"
        );
        if experiment == "errors" {
            let status = reqwest::Client::new()
                .post(format!("{}/generate", stack.llm1))
                .json(&json!({"prompt": "direct", "max_tokens": 4}))
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
    for (experiment, during) in [("kill", RunState::Stopped), ("pause", RunState::Paused)] {
        let (child, report) = stack.start(experiment, "llm_service_1", &[]);
        assert!(
            eventually(|| async { stack.state("llm_service_1").await == during }).await,
            "{experiment}: llm_service_1 never {during:?}"
        );
        let (code, text, journal) = finish(child, &report).await;
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
        let body: Value = reqwest::Client::new()
            .post(format!("{url}/chaos/faults"))
            .json(&json!({"kind": "error", "status": 503, "duration_s": 60}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        manual.push(body["id"].clone());
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
    assert_eq!(
        stack.faults().await.len(),
        1,
        "only the fault put there by hand"
    );
    reqwest::Client::new()
        .delete(format!("{}/chaos/faults", stack.llm1))
        .send()
        .await
        .unwrap();

    // The guard: with llm_service_2 down, errors on llm_service_1 make every answer a
    // fallback; the run aborts and rolls back within a second or two. (First the gateway
    // gets over the faults above: its breakers close after their 2 s.)
    let healthy = eventually(|| async {
        let body: Value = match reqwest::get(format!("{}/health", stack.gateway)).await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let answer: Value = match reqwest::Client::new()
            .post(format!("{}/generate", stack.gateway))
            .json(&json!({"prompt": "warm up", "max_tokens": 4}))
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        body["overall_status"] == "healthy" && answer["data"]["fallback_used"] == false
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
