//! The experiments' stack: redis-server, two llm-services (the first behind the fault
//! proxy) and a gateway in a `lab`-style run directory, and the helpers that run
//! `chaos-monkey run` against it and read its journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use llm_api::fault::{FaultList, FaultView};
use serde_json::Value;
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
pub struct Stack {
    pub dir: PathBuf,
    pub stack: LocalStack,
    pub gateway: String,
    pub llm1: String,
    /// llm_service_1 through the fault proxy (what the gateway uses).
    pub proxied: String,
    /// The fault proxy's API.
    pub proxy_api: String,
}

impl Stack {
    pub async fn up() -> Self {
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
                ("CHAOS_ENABLED", "true".into()),
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
                        ("DATABASE_URL", "sqlite::memory:".into()),
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
    pub fn start(&self, experiment: &str, target: &str, extra: &[&str]) -> (Child, PathBuf) {
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

    pub async fn state(&self, name: &str) -> RunState {
        self.stack
            .status()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .state
    }

    /// The faults active on llm_service_1.
    pub async fn faults(&self) -> Vec<FaultView> {
        let list: FaultList = reqwest::get(format!("{}/chaos/faults", self.llm1))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list.faults
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
pub async fn finish(child: Child, report: &Path) -> (i32, String, Value) {
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

pub fn kinds(journal: &Value) -> Vec<String> {
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

/// Polls `probe` every 50 ms for up to 30 s until it holds.
pub async fn eventually<F, Fut>(mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // Generous: under a full test run on two cores an experiment may take a while to reach
    // its injection (it probes the steady state first); success returns at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
