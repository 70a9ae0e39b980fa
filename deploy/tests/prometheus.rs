//! A real Prometheus — Debian's `prometheus` package, found or fetched the way
//! `deploy/validate` fetches promtool — scrapes a running gateway on loopback with the
//! repository's `config/alert.rules.yml` loaded: a gateway series reads back through the
//! HTTP API, every rule of the file evaluates without error, and the SLI recording rules
//! give the share of good answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Address, Process, calm_llm_service, free_port, gateway_for, poll, post, root};
use test_support::unique_id;
use tokio::process::Command;

/// How long Prometheus may take to scrape, evaluate and answer what a step waits for (it
/// scrapes and evaluates every second here).
const DEADLINE: Duration = Duration::from_secs(60);

/// Where `deploy/validate` unpacks Debian's `prometheus` package (promtool and prometheus).
fn tools_dir() -> PathBuf {
    root().join("target/tools/prometheus")
}

/// `prometheus` on PATH, else the one unpacked under target/tools/, else Debian's package
/// fetched and unpacked there (`apt-get download`, `dpkg-deb -x`: no root needed unless the
/// package lists must be updated first). Fails the test saying what to install when none
/// can be had: never a silent skip.
fn prometheus_binary() -> PathBuf {
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    }) {
        return found;
    }
    let unpacked = tools_dir().join("usr/bin/prometheus");
    if unpacked.is_file() {
        return unpacked;
    }
    fetch_package().unwrap_or_else(|e| {
        panic!(
            "this test needs Prometheus and could not get it: {e}\n\
             Install Debian's package (apt-get install prometheus), or run `bash deploy/validate` \
             (it unpacks the package into {}), then run the test again.",
            tools_dir().display()
        )
    });
    assert!(
        unpacked.is_file(),
        "Debian's prometheus package was unpacked into {} but holds no usr/bin/prometheus",
        tools_dir().display()
    );
    unpacked
}

/// `apt-get download prometheus` (after `apt-get update` when the lists do not know it) and
/// `dpkg-deb -x` into a folder of its own, renamed to target/tools/prometheus at the end so
/// that a test or `deploy/validate` running at the same time never sees half a package.
fn fetch_package() -> Result<(), String> {
    let scratch = TempDir::new("prometheus-deb");
    let download = || {
        StdCommand::new("apt-get")
            .args(["download", "prometheus"])
            .current_dir(&scratch.0)
            .output()
    };
    let mut output = download().map_err(|e| format!("apt-get does not run: {e}"))?;
    if !output.status.success() {
        let update = StdCommand::new("apt-get")
            .args(["update", "-qq"])
            .output()
            .map_err(|e| format!("apt-get update does not run: {e}"))?;
        if !update.status.success() {
            return Err(format!(
                "apt-get download prometheus failed ({}), and so did apt-get update: {}",
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&update.stderr).trim()
            ));
        }
        output = download().map_err(|e| format!("apt-get does not run: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "apt-get download prometheus failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    let deb = std::fs::read_dir(&scratch.0)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .ok_or("apt-get download prometheus left no .deb")?;
    let tools = tools_dir();
    let parent = tools.parent().ok_or("target/tools has no parent")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let staging = parent.join(unique_id("prometheus-unpacking"));
    let unpacked = StdCommand::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&staging)
        .status()
        .map_err(|e| format!("dpkg-deb does not run: {e}"))?;
    if !unpacked.success() {
        return Err(format!("dpkg-deb -x {} failed ({unpacked})", deb.display()));
    }
    // Someone else may have finished first: theirs is as good as ours.
    if std::fs::rename(&staging, &tools).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(())
}

/// A folder under the system's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(unique_id(prefix));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Prometheus of this test on a free loopback port, its TSDB in a temporary folder.
/// Dropped (the test done or failed): killed, then its folder removed.
struct Prometheus {
    process: Process,
    pid: u32,
    url: String,
    // Declared last: dropped after the process is gone.
    _dir: TempDir,
}

impl Prometheus {
    /// Starts `binary` with a configuration that scrapes `/metrics?format=prometheus` of
    /// the gateway at `gateway_port` every second and evaluates `rule_file` every second;
    /// waits until `/-/ready` answers.
    async fn start(binary: &Path, gateway_port: u16, rule_file: &Path) -> Self {
        let dir = TempDir::new("prometheus");
        // JSON strings are YAML strings: the paths need no escaping of their own.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: gateway\n    metrics_path: /metrics\n    \
             params:\n      format: [prometheus]\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{gateway_port}\"]\n",
            rules = json!(rule_file.display().to_string()),
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .current_dir(&dir.0)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let process =
            Process::start("prometheus", command, Address::Port(port), Some("/-/ready")).await;
        let pid = process.pid();
        let url = process.url().to_owned();
        Self {
            process,
            pid,
            url,
            _dir: dir,
        }
    }

    /// `GET /api/v1/{path}` with `query`: its `data`, or why there is none.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), query)
            .map_err(|e| e.to_string())?;
        let answer = test_support::client()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(body.to_string())
        }
    }

    /// The instant vector `promql` gives now: each series' labels and value.
    async fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>, String> {
        let data = self.api("query", &[("query", promql)]).await?;
        Ok(data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sample| {
                let value = sample["value"][1].as_str()?.parse().ok()?;
                Some((sample["metric"].clone(), value))
            })
            .collect())
    }

    /// Polls `promql` until `done` accepts its samples, for at most [`DEADLINE`]; fails the
    /// test with the last answer and Prometheus' output otherwise.
    async fn wait_for(&self, what: &str, promql: &str, done: impl Fn(&[(Value, f64)]) -> bool) {
        let polled = poll(
            DEADLINE,
            || self.query(promql),
            |answer| answer.as_ref().is_ok_and(|samples| done(samples)),
        )
        .await;
        assert!(
            polled.ok,
            "Prometheus: {what}: not within {DEADLINE:?}; `{promql}` last gave {:?}\n\
             Prometheus' output:\n{}",
            polled.value,
            self.process.logs().tail(30)
        );
    }

    /// SIGTERM, and waits until it has exited.
    async fn stop(&mut self) {
        self.process.terminate().await;
        let status = self.process.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "Prometheus exited with {status}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // No async here: `kill -KILL` the way test-support signals, before the folder goes.
        if !self.process.has_exited() {
            let _ = StdCommand::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            for _ in 0..100 {
                if self.process.has_exited() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn one_value(samples: &[(Value, f64)]) -> Option<f64> {
    match samples {
        [(_, value)] => Some(*value),
        _ => None,
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_gateway_and_evaluates_the_repository_rules() {
    let binary = prometheus_binary();
    let rule_file = root().join("config/alert.rules.yml");
    let expected_rules = deploy_check::files::rules(&std::fs::read_to_string(&rule_file).unwrap())
        .unwrap()
        .len();

    let llm = calm_llm_service().await;
    let gateway = gateway_for(&llm, &[]).await;
    // One answer before the first scrape, so that the request counter's series exists.
    let first = post(gateway.url("/generate"), json!({"prompt": "What is AI?"})).await;
    assert_eq!(first.status(), 200);

    let mut prometheus = Prometheus::start(&binary, gateway.port, &rule_file).await;
    prometheus
        .wait_for("scrapes the gateway", "up{job=\"gateway\"}", |s| {
            one_value(s) == Some(1.0)
        })
        .await;
    let answered = "sum(llm_requests_total{job=\"gateway\", status_code=\"200\"})";
    prometheus
        .wait_for("has the first answer", answered, |s| {
            one_value(s) == Some(1.0)
        })
        .await;

    // Five more answers, and one invalid request (422: neither good nor bad for the SLO).
    for _ in 0..5 {
        let answer = post(gateway.url("/generate"), json!({"prompt": "What is AI?"})).await;
        assert_eq!(answer.status(), 200);
    }
    let refused = post(gateway.url("/generate"), json!({"prompt": ""})).await;
    assert_eq!(refused.status(), 422);

    prometheus
        .wait_for("reads the six answers back", answered, |s| {
            one_value(s) == Some(6.0)
        })
        .await;
    prometheus
        .wait_for(
            "reads the refused request back",
            "sum(llm_requests_total{job=\"gateway\", status_code=\"422\"})",
            |s| one_value(s) == Some(1.0),
        )
        .await;
    // The SLIs: every answer counted was good (200, and fast from a calm llm-service).
    for sli in ["availability", "latency"] {
        for window in ["5m", "3d"] {
            let recorded = format!("job:slo_{sli}:ratio_rate{window}{{job=\"gateway\"}}");
            prometheus
                .wait_for("evaluates the SLI recording rule", &recorded, |s| {
                    one_value(s) == Some(1.0)
                })
                .await;
        }
    }

    // Every rule of the file loaded and evaluated without error.
    let polled = poll(
        DEADLINE,
        || prometheus.api("rules", &[]),
        |data| {
            data.as_ref().is_ok_and(|data| {
                let health = rule_healths(data);
                health.len() == expected_rules && health.iter().all(|(_, h)| h == "ok")
            })
        },
    )
    .await;
    assert!(
        polled.ok,
        "Prometheus did not load and evaluate the {expected_rules} rules of {} without \
         error within {DEADLINE:?}: {:?}",
        rule_file.display(),
        polled.value.as_ref().map(rule_healths)
    );
    // A healthy gateway: no SLO alert pending or firing.
    let alerts = prometheus.api("alerts", &[]).await.unwrap();
    let slo_alerts: Vec<_> = alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["slo"].is_string())
        .collect();
    assert!(slo_alerts.is_empty(), "{slo_alerts:?}");

    prometheus.stop().await;
}

/// Each rule's name and health (`ok`, `err`, `unknown`) in a `/api/v1/rules` answer.
fn rule_healths(data: &Value) -> Vec<(String, String)> {
    data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .map(|rule| {
            let name = rule["name"].as_str().unwrap_or_default().to_owned();
            let health = rule["health"].as_str().unwrap_or_default().to_owned();
            let error = rule["lastError"].as_str().unwrap_or_default();
            if error.is_empty() {
                (name, health)
            } else {
                (name, format!("{health}: {error}"))
            }
        })
        .collect()
}
