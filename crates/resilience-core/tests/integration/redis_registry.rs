//! The Redis registry against a real Redis: key layout, TTL expiry, heartbeats, the index,
//! bounded failures when Redis is absent or silent, and discovery serving a stale snapshot
//! through an outage. TTLs are a few hundred milliseconds and outcomes are polled with a
//! deadline, never awaited with a fixed sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use resilience_core::Error;
use resilience_core::discovery::DiscoveryClient;
use resilience_core::error::Fault;
use resilience_core::registry::{
    Instance, LLM_SERVICE, RedisRegistry, Registration, ServiceRegistry,
};

use crate::{OP_TIMEOUT, RedisProxy, TestRedis, eventually};

fn llm(id: &str, port: u16) -> Instance {
    Instance::new(LLM_SERVICE, id, format!("http://127.0.0.1:{port}"))
        .with_metadata("model", "gpt-4-simulation")
        .with_metadata("tier", "secondary")
        .with_metadata("version", "1.0.0")
}

async fn listed_ids(registry: &RedisRegistry) -> Vec<String> {
    registry
        .list(LLM_SERVICE)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

#[tokio::test]
async fn registered_instance_is_listed_with_its_metadata() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    registry
        .register(&llm("llm_service_1", 8001), Duration::from_secs(10))
        .await
        .unwrap();
    let listed = registry.list(LLM_SERVICE).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "llm_service_1");
    assert_eq!(listed[0].url, "http://127.0.0.1:8001");
    assert_eq!(listed[0].model(), Some("gpt-4-simulation"));
    assert_eq!(listed[0].tier(), "secondary");
    assert_eq!(listed[0].metadata["version"], "1.0.0");
    assert!(listed[0].registered_at_ms > 1_600_000_000_000);
}

#[tokio::test]
async fn list_is_sorted_by_id_whatever_the_expiry_order() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    for (id, secs) in [("c", 10), ("a", 30), ("b", 5)] {
        registry
            .register(&llm(id, 8000), Duration::from_secs(secs))
            .await
            .unwrap();
    }
    assert_eq!(listed_ids(&registry).await, ["a", "b", "c"]);
}

#[tokio::test]
async fn entry_lives_under_the_exact_key_with_a_pttl_within_the_ttl() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    let ttl = Duration::from_secs(5);
    registry
        .register(&llm("llm_service_1", 8001), ttl)
        .await
        .unwrap();

    let mut raw = redis.raw().await;
    let key = redis.key("service:llm-service:llm_service_1");
    let pttl: i64 = raw.pttl(&key).await.unwrap();
    assert!(pttl > 0 && pttl <= 5000, "PTTL {pttl}");
    let json: String = raw.get(&key).await.unwrap();
    let stored: Instance = serde_json::from_str(&json).unwrap();
    assert_eq!(stored.id, "llm_service_1");
    assert_eq!(stored.service, LLM_SERVICE);
    let score: Option<f64> = raw
        .zscore(redis.key("services:llm-service"), "llm_service_1")
        .await
        .unwrap();
    assert!(score.is_some(), "the index holds the member");
}

#[tokio::test]
async fn entry_without_heartbeat_expires() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    registry
        .register(&llm("short", 8001), Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(listed_ids(&registry).await, ["short"]);
    eventually("the entry expires", || async {
        listed_ids(&registry).await.is_empty()
    })
    .await;

    let mut raw = redis.raw().await;
    let members: Vec<String> = raw
        .zrange(redis.key("services:llm-service"), 0, -1)
        .await
        .unwrap();
    assert!(members.is_empty(), "list pruned the index: {members:?}");
}

#[tokio::test]
async fn heartbeat_keeps_the_entry_alive_past_its_original_ttl() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    // A 500 ms TTL heartbeated every 100 ms tolerates a 400 ms stall of a loaded machine.
    let ttl = Duration::from_millis(500);
    registry.register(&llm("steady", 8001), ttl).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < ttl * 3 {
        tokio::time::sleep(ttl / 5).await; // the heartbeat cadence under test, not a wait
        assert!(
            registry
                .heartbeat(LLM_SERVICE, "steady", ttl)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        listed_ids(&registry).await,
        ["steady"],
        "alive after 3 TTLs"
    );
    eventually("it expires once heartbeats stop", || async {
        listed_ids(&registry).await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn heartbeat_on_an_expired_entry_returns_false() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    registry
        .register(&llm("late", 8001), Duration::from_millis(150))
        .await
        .unwrap();
    let mut raw = redis.raw().await;
    let key = redis.key("service:llm-service:late");
    eventually("the key expires", || {
        let (mut raw, key) = (raw.clone(), key.clone());
        async move { !raw.exists::<_, bool>(&key).await.unwrap() }
    })
    .await;

    assert!(
        !registry
            .heartbeat(LLM_SERVICE, "late", Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        !raw.exists::<_, bool>(&key).await.unwrap(),
        "a heartbeat never resurrects"
    );
    let score: Option<f64> = raw
        .zscore(redis.key("services:llm-service"), "late")
        .await
        .unwrap();
    assert_eq!(score, None, "and it drops the index member");
    assert!(
        !registry
            .heartbeat(LLM_SERVICE, "never-registered", Duration::from_secs(5))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn deregistration_removes_the_entry_and_the_index_member() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    registry
        .register(&llm("a", 8001), Duration::from_secs(10))
        .await
        .unwrap();
    registry
        .register(&llm("b", 8002), Duration::from_secs(10))
        .await
        .unwrap();
    registry.deregister(LLM_SERVICE, "a").await.unwrap();
    registry.deregister(LLM_SERVICE, "a").await.unwrap();

    let mut raw = redis.raw().await;
    assert!(
        !raw.exists::<_, bool>(redis.key("service:llm-service:a"))
            .await
            .unwrap()
    );
    let members: Vec<String> = raw
        .zrange(redis.key("services:llm-service"), 0, -1)
        .await
        .unwrap();
    assert_eq!(members, ["b"]);
    assert_eq!(listed_ids(&registry).await, ["b"]);
}

#[tokio::test]
async fn list_reads_the_index_not_the_keyspace() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    registry
        .register(&llm("indexed", 8001), Duration::from_secs(10))
        .await
        .unwrap();
    let mut raw = redis.raw().await;
    // An entry nobody indexed is invisible: list never scans keys.
    let ghost = serde_json::to_string(&llm("ghost", 8009)).unwrap();
    let _: () = raw
        .set_ex(redis.key("service:llm-service:ghost"), ghost, 10)
        .await
        .unwrap();
    // An indexed member whose entry is gone is forgotten.
    let _: () = raw
        .zadd(redis.key("services:llm-service"), "vanished", 9.0e15)
        .await
        .unwrap();

    assert_eq!(listed_ids(&registry).await, ["indexed"]);
    let members: Vec<String> = raw
        .zrange(redis.key("services:llm-service"), 0, -1)
        .await
        .unwrap();
    assert_eq!(members, ["indexed"]);
}

#[tokio::test]
async fn a_malformed_entry_is_skipped_not_fatal() {
    let redis = TestRedis::new();
    let registry = redis.registry();
    registry
        .register(&llm("good", 8001), Duration::from_secs(10))
        .await
        .unwrap();
    let mut raw = redis.raw().await;
    let _: () = raw
        .set_ex(redis.key("service:llm-service:bad"), "{not json", 10)
        .await
        .unwrap();
    let _: () = raw
        .zadd(redis.key("services:llm-service"), "bad", 9.0e15)
        .await
        .unwrap();
    assert_eq!(listed_ids(&registry).await, ["good"]);
}

#[tokio::test]
async fn prefixes_keep_namespaces_apart() {
    let (one, two) = (TestRedis::new(), TestRedis::new());
    one.registry()
        .register(&llm("mine", 8001), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(listed_ids(&two.registry()).await.is_empty());
    assert_eq!(listed_ids(&one.registry()).await, ["mine"]);
}

#[tokio::test]
async fn registration_task_keeps_the_entry_alive_and_deregisters_it() {
    let redis = TestRedis::new();
    let registry = Arc::new(redis.registry());
    let ttl = Duration::from_millis(500);
    let registration =
        Registration::spawn(registry.clone(), llm("owned", 8001), ttl, ttl / 5).unwrap();
    assert!(registration.first_attempt().await.registered);
    tokio::time::sleep(ttl * 3).await; // time must pass beyond the TTL for this to mean anything
    assert_eq!(listed_ids(&registry).await, ["owned"]);
    assert!(
        registration.status().heartbeats >= 3,
        "{:?}",
        registration.status()
    );

    registration.deregister().await.unwrap();
    let mut raw = redis.raw().await;
    assert!(
        !raw.exists::<_, bool>(redis.key("service:llm-service:owned"))
            .await
            .unwrap()
    );
    assert!(listed_ids(&registry).await.is_empty());
}

#[tokio::test]
async fn a_redis_that_is_not_listening_fails_within_the_op_timeout() {
    let redis = TestRedis::new();
    let registry = redis.registry_at("redis://127.0.0.1:1");
    let ttl = Duration::from_secs(1);
    for (op, outcome) in [
        ("register", registry.register(&llm("x", 1), ttl).await.err()),
        (
            "heartbeat",
            registry.heartbeat(LLM_SERVICE, "x", ttl).await.err(),
        ),
        (
            "deregister",
            registry.deregister(LLM_SERVICE, "x").await.err(),
        ),
        ("list", registry.list(LLM_SERVICE).await.err()),
    ] {
        let error = outcome.unwrap_or_else(|| panic!("{op} succeeded without Redis"));
        assert!(
            matches!(error, Error::Redis(_) | Error::Timeout { .. }),
            "{op}: {error:?}"
        );
        assert_eq!(error.fault(), Fault::Upstream, "{op}");
        assert!(error.is_retryable(), "{op}: {error}");
    }
    let start = Instant::now();
    let _ = registry.list(LLM_SERVICE).await;
    assert!(start.elapsed() < OP_TIMEOUT * 2, "{:?}", start.elapsed());
}

#[tokio::test]
async fn a_redis_that_never_answers_times_out() {
    let redis = TestRedis::new();
    // Accepts connections (the kernel completes the handshake) and never reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry = redis.registry_at(&format!("redis://{}", silent.local_addr().unwrap()));
    let start = Instant::now();
    let error = registry.list(LLM_SERVICE).await.unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(error, Error::Timeout { after_ms: 500, .. }) || error.is_retryable(),
        "{error:?}"
    );
    assert!(took >= OP_TIMEOUT - Duration::from_millis(50), "{took:?}");
    assert!(took < OP_TIMEOUT * 2, "{took:?}");
}

#[tokio::test]
async fn discovery_over_redis_serves_a_stale_snapshot_through_an_outage() {
    let redis = TestRedis::new();
    let proxy = RedisProxy::start(&redis).await;
    redis
        .registry()
        .register(&llm("llm_service_1", 8001), Duration::from_secs(30))
        .await
        .unwrap();
    let configured = Instance::new(LLM_SERVICE, "127.0.0.1:8001", "http://127.0.0.1:8001");
    let client = DiscoveryClient::new(LLM_SERVICE, vec![configured])
        .unwrap()
        .with_registry(Arc::new(redis.registry_at(&proxy.url)))
        .with_refresh_timeout(Duration::from_secs(1));

    client.refresh().await.unwrap();
    let good = client.snapshot();
    assert_eq!(good.len(), 1, "one instance per URL");
    assert_eq!(
        good.instances()[0].id,
        "llm_service_1",
        "the registry entry wins"
    );

    proxy.cut();
    let start = Instant::now();
    assert!(client.refresh().await.is_err());
    assert!(
        start.elapsed() < Duration::from_millis(1300),
        "bounded: {:?}",
        start.elapsed()
    );
    let stale = client.snapshot();
    assert!(stale.is_stale());
    assert_eq!(stale.instances, good.instances);
    assert!(stale.last_error.is_some());

    proxy.restore();
    eventually("discovery recovers once Redis is back", || async {
        client.refresh().await.is_ok()
    })
    .await;
    let fresh = client.snapshot();
    assert!(!fresh.is_stale());
    assert_eq!(fresh.instances()[0].id, "llm_service_1");
}
