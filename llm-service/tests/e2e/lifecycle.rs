//! Registration in Redis, serving without it, graceful shutdown, bad configuration.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;

use crate::harness::{LlmExt, LlmService, RedisServer, eventually};

async fn connect(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the test's redis-server answers")
}

#[tokio::test]
async fn registers_with_a_ttl_heartbeats_and_deregisters_on_sigterm_before_draining() {
    let server = RedisServer::start().await;
    let mut llm = LlmService::builder()
        .registry(&server.url(), 3000)
        .env("MODEL_NAME", "gpt-4-simulation")
        .env("SERVICE_TIER", "secondary")
        .start()
        .await;
    let key = format!("service:llm-service:{}", llm.service_id);
    let mut con = connect(&server).await;
    let exists = |con: &redis::aio::MultiplexedConnection| {
        let mut con = con.clone();
        let key = key.clone();
        async move { con.exists::<_, bool>(&key).await.unwrap() }
    };
    let appeared = eventually(Duration::from_secs(1), || exists(&con)).await;
    assert!(appeared, "the entry appears within 1 s of listening");
    let pttl: i64 = con.pttl(&key).await.unwrap();
    assert!(pttl > 0 && pttl <= 3000, "pttl {pttl}");
    let entry: String = con.get(&key).await.unwrap();
    let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
    assert_eq!(entry["url"], llm.url);
    assert_eq!(entry["metadata"]["model"], "gpt-4-simulation");
    assert_eq!(entry["metadata"]["tier"], "secondary");
    assert_eq!(entry["metadata"]["version"], "1.0.0");
    let indexed: Vec<String> = con.zrange("services:llm-service", 0, -1).await.unwrap();
    assert!(indexed.contains(&llm.service_id));

    // Past its first TTL, the heartbeats have kept it alive.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(exists(&con).await, "refreshed by heartbeats");
    let (_, health) = llm.get_json("/health").await;
    assert_eq!(health["registration"]["registered"], true);

    // SIGTERM while a slow request is in flight: the entry goes first, the request still
    // finishes, then the process exits.
    llm.add_fault(json!({"kind": "latency", "ms": 1500, "count": 1}))
        .await;
    let url = format!("{}/generate", llm.url);
    let client = llm.client.clone();
    let pending = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"prompt": "slow"}))
            .send()
            .await
    });
    let in_flight = eventually(Duration::from_secs(1), || async {
        llm.get_json("/health").await.1["in_flight"] == 1
    })
    .await;
    assert!(in_flight);
    llm.terminate().await;
    let gone = eventually(Duration::from_secs(1), || async { !exists(&con).await }).await;
    assert!(gone, "deleted on SIGTERM");
    assert!(
        !pending.is_finished(),
        "deleted before the drain finished the request"
    );
    assert_eq!(pending.await.unwrap().unwrap().status(), 200);
    let status = llm.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let indexed: Vec<String> = con.zrange("services:llm-service", 0, -1).await.unwrap();
    assert!(!indexed.contains(&llm.service_id));
}

#[tokio::test]
async fn serves_without_redis_and_reports_degraded() {
    let llm = LlmService::builder()
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("REGISTRY_TTL_MS", 600)
        .start()
        .await;
    let response = llm
        .post_json("/generate", json!({"prompt": "still there?"}))
        .await;
    assert_eq!(response.status(), 200);
    let degraded = eventually(Duration::from_secs(5), || async {
        let (status, health) = llm.get_json("/health").await;
        status == 200
            && health["overall_status"] == "degraded"
            && health["registration"]["registered"] == false
            && health["registration"]["last_error"].is_string()
    })
    .await;
    assert!(degraded, "{:?}", llm.get_json("/health").await);
}

#[tokio::test]
async fn in_flight_requests_finish_during_shutdown() {
    let mut llm = LlmService::builder().latency(1000, 1000).start().await;
    let url = format!("{}/generate", llm.url);
    let client = llm.client.clone();
    let pending = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"prompt": "finish me"}))
            .send()
            .await
    });
    let started = eventually(Duration::from_secs(2), || async {
        llm.get_json("/health").await.1["in_flight"] == 1
    })
    .await;
    assert!(started);
    llm.terminate().await;
    let response = pending.await.unwrap().expect("answered, not dropped");
    assert_eq!(response.status(), 200);
    let status = llm.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    // The log reader may be a line behind the exit.
    let drained = eventually(Duration::from_secs(2), || async {
        llm.logs()
            .lines()
            .iter()
            .any(|line| line.contains("drained"))
    })
    .await;
    assert!(drained, "{}", llm.logs().lines().join("\n"));
}

#[tokio::test]
async fn invalid_settings_stop_start_up_naming_the_variable() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llm-service"))
        .env("SIM_FAILURE_RATE", "2")
        .env("SERVICE_TIER", "gold")
        .env("PORT", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SIM_FAILURE_RATE") && stderr.contains("SERVICE_TIER"),
        "{stderr}"
    );
}

#[tokio::test]
async fn help_lists_every_setting() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llm-service"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for var in [
        "SERVICE_ID",
        "SERVICE_VERSION",
        "MODEL_NAME",
        "REDIS_URL",
        "MAX_TOKENS",
        "RESPONSE_TIME_SLA",
        "PORT",
        "ADVERTISE_URL",
        "SIM_MIN_LATENCY_MS",
        "SIM_MAX_LATENCY_MS",
        "SIM_FAILURE_RATE",
        "SIM_SEED",
        "SERVICE_TIER",
        "CHAOS_ENABLED",
        "CHAOS_TOKEN",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}
