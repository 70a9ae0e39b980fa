//! The gateway suite's helpers around the workspace's one test harness (`test-support`,
//! crates/test-support), which starts the real `gateway`, `llm-service` and
//! `redis-server` processes on free ports, waits until they are healthy and kills them
//! when their handles drop. Only what these tests alone use lives here: the gateway's HTTP
//! calls ([`GatewayExt`]), counters read from an llm-service ([`LlmExt`]), steady traffic.
//!
//! ```ignore
//! let a = LlmService::builder().start().await;
//! let b = LlmService::builder().start().await;
//! let gw = Gateway::builder().upstreams(&[&a, &b]).breaker(3, 2).start().await;
//! let answer = gw.generate("hi").await;
//! assert_eq!(answer.data()["fallback_used"], false);
//! ```

pub mod chromium;
mod gateway;
mod llm;
mod traffic;

pub use gateway::{Answer, GatewayExt, Streamed, generate_on};
pub use llm::LlmExt;
pub use test_support::{Gateway, LlmService, RedisServer, poll};
pub use traffic::Traffic;

/// The prompt-independent `max_tokens` every helper request asks for.
pub(crate) const MAX_TOKENS: u64 = 16;

/// Sum of the samples of `name` whose line contains every `filter` (Prometheus text).
pub fn prometheus_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| filters.iter().all(|f| line.contains(f)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the Python client `script` (a path from the workspace root) with `args`, which
/// drives `gw` with the official `openai` SDK and prints one JSON object: that object. A
/// failed script fails the test with its stderr and the gateway's last log lines.
pub async fn python_client(gw: &Gateway, script: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new("python3")
        .arg(test_support::workspace_root().join(script))
        .args(args)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the SDK failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        gw.logs().tail(20)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}
