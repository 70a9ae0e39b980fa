//! `chaos-monkey proxy` end to end: the real binary between a real llm-service and a real
//! gateway, driven by the real Toxiproxy client (`toxiproxy-python`, through
//! tests/toxiproxy_client.py), measured through the gateway's `/generate`.
//!
//! Needs `cargo build -p llm-service -p gateway` (started through crates/test-support) and
//! `pip install -r chaos-monkey/tests/requirements.txt`; without Python or the client the
//! tests fail and say so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use llm_api::envelope::GenerateSuccess;
use llm_api::generate::GenerateRequest;
use serde_json::{Value, json};
use test_support::{Address, Gateway, LlmService, Process};
use tokio::process::Command;

const CLIENT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/toxiproxy_client.py");
const INSTALL_HINT: &str = "pip install -r chaos-monkey/tests/requirements.txt";
/// The proxy's name in the stack.
const PROXY: &str = "llm";

/// `chaos-monkey proxy ARGS`, listening (on `--listen 127.0.0.1:0`) and answering
/// `/version`.
async fn start_proxy(args: &[&str]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaos-monkey"));
    command
        .arg("proxy")
        .args(args)
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "info");
    Process::start(
        "chaos-monkey proxy",
        command,
        Address::FromLog,
        Some("/version"),
    )
    .await
}

/// The real Toxiproxy client, one step per run of the script.
struct ToxiproxyClient {
    /// `HOST:PORT` of the API.
    api: String,
}

impl ToxiproxyClient {
    /// Runs one step; its JSON answer. Fails the test, saying what to install, when
    /// Python or the client is missing.
    async fn run(&self, args: &[&str]) -> Value {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let output = Command::new(&python)
            .arg(CLIENT_SCRIPT)
            .arg(&self.api)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!("{python} is needed to run the Toxiproxy client ({e}): install Python 3, then {INSTALL_HINT}")
            });
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0) => {}
            Some(3) => panic!("the Toxiproxy client is not installed: {INSTALL_HINT}\n{stderr}"),
            _ => panic!(
                "toxiproxy_client.py {args:?} failed ({}):\n{stderr}",
                output.status
            ),
        }
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "toxiproxy_client.py {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}

/// One `/generate` answer of the gateway.
#[derive(Debug)]
struct Generated {
    status: u16,
    fallback_used: Option<bool>,
    /// `data.response_time_ms`.
    response_time_ms: u64,
    /// Measured by the test.
    elapsed: Duration,
}

/// An llm-service, the proxy in front of it (created by the Toxiproxy client), and a
/// gateway whose only upstream is the proxy.
struct Stack {
    _llm: LlmService,
    proxy: Process,
    gateway: Gateway,
    toxiproxy: ToxiproxyClient,
    http: reqwest::Client,
}

impl Stack {
    /// The stack with the gateway probing its upstream every `health_check_interval_ms`.
    async fn start(health_check_interval_ms: u64) -> Self {
        let llm = LlmService::builder()
            .env("SERVICE_ID", format!("proxy-test-{}", std::process::id()))
            .start()
            .await;

        let proxy = start_proxy(&["--listen", "127.0.0.1:0"]).await;
        let toxiproxy = ToxiproxyClient {
            api: proxy.url().trim_start_matches("http://").to_owned(),
        };
        toxiproxy.run(&["check"]).await;
        let upstream = llm.url.trim_start_matches("http://");
        let created = toxiproxy.run(&["create", PROXY, upstream]).await;
        let listen = created["listen"].as_str().unwrap().to_owned();

        // The gateway's own breaker threshold (5), not the harness's.
        let gateway = Gateway::builder()
            .env("LLM_SERVICE_URLS", format!("http://{listen}"))
            .env("HEALTH_CHECK_INTERVAL_MS", health_check_interval_ms)
            .per_try_timeout_ms(1000)
            .breaker(5, 2)
            .start()
            .await;
        Self {
            _llm: llm,
            proxy,
            gateway,
            toxiproxy,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
        }
    }

    /// Asks the gateway for a completion of a prompt never asked before (no cache hit).
    async fn generate(&self) -> Generated {
        static PROMPTS: AtomicUsize = AtomicUsize::new(0);
        let n = PROMPTS.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/generate", self.gateway.url))
            .json(&GenerateRequest {
                max_tokens: Some(8),
                ..GenerateRequest::new(format!("proxy test {} prompt {n}", std::process::id()))
            })
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let success: Option<GenerateSuccess> = response.json().await.ok();
        let elapsed = started.elapsed();
        Generated {
            status,
            fallback_used: success.as_ref().map(|s| s.data.fallback_used),
            response_time_ms: success.map_or(0, |s| s.data.response_time_ms),
            elapsed,
        }
    }

    /// Answers until one satisfies `done`, for at most `within`; that answer.
    async fn generate_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&Generated) -> bool,
    ) -> (Generated, Duration) {
        let started = Instant::now();
        let mut seen = Vec::new();
        while started.elapsed() < within {
            let answer = self.generate().await;
            if done(&answer) {
                return (answer, started.elapsed());
            }
            seen.push(answer);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{what}: not within {within:?}; answers: {seen:#?}\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        format!(
            "--- chaos-monkey proxy ---\n{}\n--- gateway ---\n{}",
            self.proxy.logs().tail(30),
            self.gateway.logs().tail(30)
        )
    }

    /// `count` answers, all from the upstream; their response times.
    async fn upstream_times(&self, count: usize) -> Vec<u64> {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let answer = self.generate().await;
            assert!(
                answer.status == 200 && answer.fallback_used == Some(false),
                "served by the upstream: {answer:?}\n{}",
                self.logs()
            );
            times.push(answer.response_time_ms);
        }
        times
    }
}

#[tokio::test]
async fn a_latency_toxic_from_the_toxiproxy_client_slows_the_gateway_until_removed() {
    // The gateway never lets a health probe outlast the interval between probes: with
    // 200 ms, a 400 ms latency would (rightly) take the instance out of the pool.
    let stack = Stack::start(1000).await;
    let before = stack.upstream_times(3).await;
    let fastest_before = *before.iter().min().unwrap();
    let slowest_before = *before.iter().max().unwrap();

    let added = stack.toxiproxy.run(&["latency", PROXY, "400"]).await;
    assert_eq!(added["toxics"], json!(["latency_downstream"]));
    // The gateway's pooled connections were open before the toxic: it reaches them too.
    let during = stack.upstream_times(3).await;
    eprintln!("response_time_ms before: {before:?}, with 400 ms latency: {during:?}");
    for took in &during {
        // 2 ms for the rounding down of two millisecond counts.
        assert!(
            *took >= 400 && *took + 2 >= fastest_before + 400,
            "400 ms more than before ({before:?}): {during:?}"
        );
    }

    let removed = stack
        .toxiproxy
        .run(&["remove-toxic", PROXY, "latency_downstream"])
        .await;
    assert_eq!(removed["removed"], json!(true));
    let (fast, _) = stack
        .generate_until(Duration::from_secs(5), "fast again", |a| {
            a.status == 200
                && a.fallback_used == Some(false)
                && a.response_time_ms < slowest_before + 200
        })
        .await;
    assert!(fast.response_time_ms < 400, "{fast:?}");
    eprintln!("after removal: {fast:?}");
}

#[tokio::test]
async fn a_partition_from_the_toxiproxy_client_sends_the_gateway_to_fallback_until_healed() {
    let stack = Stack::start(200).await;
    stack.upstream_times(2).await;

    let disabled = stack.toxiproxy.run(&["disable", PROXY]).await;
    assert_eq!(disabled["enabled"], json!(false));
    let first = stack.generate().await;
    assert_eq!(
        (first.status, first.fallback_used),
        (200, Some(true)),
        "the first answer in the partition comes from a fallback: {first:?}\n{}",
        stack.logs()
    );
    assert!(
        first.elapsed < Duration::from_secs(2),
        "a fallback answer comes quickly: {first:?}"
    );
    for _ in 0..3 {
        let answer = stack.generate().await;
        assert_eq!((answer.status, answer.fallback_used), (200, Some(true)));
        assert!(answer.elapsed < Duration::from_secs(2), "{answer:?}");
    }

    let enabled = stack.toxiproxy.run(&["enable", PROXY]).await;
    assert_eq!(enabled["enabled"], json!(true));
    let (_, healed_after) = stack
        .generate_until(
            Duration::from_secs(10),
            "served by the upstream again",
            |a| a.status == 200 && a.fallback_used == Some(false),
        )
        .await;
    assert!(healed_after < Duration::from_secs(10));
    eprintln!("first answer in the partition: {first:?}; healed after {healed_after:?}");
}

#[tokio::test]
async fn the_toxiproxy_client_drives_the_whole_api() {
    let proxy = start_proxy(&["--listen", "127.0.0.1:0"]).await;
    let client = ToxiproxyClient {
        api: proxy.url().trim_start_matches("http://").to_owned(),
    };
    // The upstream need not answer: conformance only configures.
    let answer = client.run(&["conformance", "127.0.0.1:9"]).await;
    assert_eq!(answer, json!({"ok": true}), "{}", proxy.logs().tail(30));
}

#[tokio::test]
async fn proxies_given_on_the_command_line_exist_at_start() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let proxy = start_proxy(&[
        "--listen",
        "127.0.0.1:0",
        "--proxy",
        &format!("echo=127.0.0.1:0={upstream_addr}"),
    ])
    .await;
    let api_url = proxy.url();
    let proxies: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{api_url}/proxies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        proxies["echo"]["upstream"],
        json!(upstream_addr.to_string())
    );
    assert_eq!(proxies["echo"]["enabled"], json!(true));
    let listen = proxies["echo"]["listen"].as_str().unwrap();
    tokio::net::TcpStream::connect(listen).await.unwrap();
    let (_accepted, _) = tokio::time::timeout(Duration::from_secs(5), upstream.accept())
        .await
        .expect("the proxy dials the upstream")
        .unwrap();
}

#[tokio::test]
async fn a_bad_proxy_flag_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos-monkey"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--proxy", "nonsense"])
        .env("LOG_FORMAT", "pretty")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("--proxy nonsense"), "{text}");
}
