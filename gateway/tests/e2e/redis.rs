//! Redis (the registry) lost at run time: the gateway keeps serving from its last snapshot,
//! `/health` reads `degraded`, and it recovers by itself when Redis returns. Each test runs
//! its own `redis-server` on a free port (no persistence: it comes back empty), never the
//! shared one.

use std::time::{Duration, Instant};

use crate::harness::{Gateway, GatewayExt, LlmService, RedisServer, Traffic, poll};

/// A private Redis, two llm-services registered in it with `ttl_ms`, and a gateway that
/// discovers them through it alone (no `LLM_SERVICE_URLS`), checked to see both.
async fn registry_stack(ttl_ms: u64) -> (RedisServer, LlmService, LlmService, Gateway) {
    let redis = RedisServer::start().await;
    let a = LlmService::builder()
        .registry(&redis.url(), ttl_ms)
        .start()
        .await;
    let b = LlmService::builder()
        .registry(&redis.url(), ttl_ms)
        .start()
        .await;
    let gw = Gateway::builder().redis(&redis.url()).start().await;

    let two = poll(
        Duration::from_secs(10),
        || gw.available_services(),
        |n| *n == Some(2),
    )
    .await;
    assert!(
        two.ok,
        "both registered instances discovered through Redis: {:?}",
        two.value
    );
    let healthy = poll(
        Duration::from_secs(5),
        || async { gw.health().await.1["overall_status"].clone() },
        |s| s == "healthy",
    )
    .await;
    assert!(healthy.ok, "healthy with Redis up: {}", healthy.value);
    let (_, health) = gw.health().await;
    let ids: Vec<&str> = health["service_discovery"]["services"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        ids.contains(&a.service_id.as_str()) && ids.contains(&b.service_id.as_str()),
        "the registry's SERVICE_IDs in services[]: {ids:?}"
    );
    (redis, a, b, gw)
}

/// Stops Redis and waits until `/health` reads `degraded` (with 200); returns when it stopped.
async fn stop_until_degraded(redis: &mut RedisServer, gw: &Gateway) -> (Instant, Duration) {
    redis.stop().await;
    let stopped = Instant::now();
    let degraded = poll(
        Duration::from_secs(5),
        || async {
            let (status, body) = gw.health().await;
            (status, body["overall_status"].clone())
        },
        |(_, s)| s == "degraded",
    )
    .await;
    assert!(
        degraded.ok,
        "/health reads `degraded` within 5 s of losing Redis; it reads {:?}",
        degraded.value
    );
    assert_eq!(degraded.value.0, 200, "degraded answers 200");
    (stopped, degraded.took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_health_but_never_fails_a_request() {
    // A short TTL: the entries are gone when Redis comes back, so the instances register
    // again while traffic flows.
    let (mut redis, _a, _b, gw) = registry_stack(1_000).await;
    let traffic = Traffic::start(&gw, Duration::from_millis(50));
    let warm = poll(
        Duration::from_secs(5),
        || async { traffic.records().len() },
        |n| *n >= 5,
    )
    .await;
    assert!(warm.ok, "traffic flows");

    let (stopped, degraded_after) = stop_until_degraded(&mut redis, &gw).await;
    // Down for ~3 s in all.
    tokio::time::sleep_until((stopped + Duration::from_secs(3)).into()).await;
    let (_, during) = gw.health().await;
    assert_eq!(
        during["overall_status"], "degraded",
        "still degraded while Redis is down"
    );
    assert_eq!(
        during["service_discovery"]["available_services"].as_u64(),
        Some(2),
        "the last snapshot keeps both instances while Redis is down: {during}"
    );

    redis.start_again().await;
    let restarted = Instant::now();
    let recovered = poll(
        Duration::from_secs(10),
        || async { gw.health().await.1["overall_status"].clone() },
        |s| s == "healthy",
    )
    .await;
    assert!(
        recovered.ok,
        "/health back to `healthy` within 10 s of Redis returning; it reads {}",
        recovered.value
    );
    let both = poll(
        Duration::from_secs(5),
        || gw.available_services(),
        |n| *n == Some(2),
    )
    .await;
    assert!(
        both.ok,
        "both instances available after Redis returned (and they registered again): {:?}",
        both.value
    );
    let after = poll(
        Duration::from_secs(5),
        || async {
            traffic
                .records()
                .iter()
                .filter(|r| r.sent > restarted + recovered.took)
                .count()
        },
        |n| *n >= 5,
    )
    .await;
    assert!(after.ok, "traffic continues after the recovery");
    let records = traffic.stop().await;

    let failed: Vec<String> = records
        .iter()
        .filter(|r| r.answer.as_ref().map_or(true, |a| a.status != 200))
        .map(|r| r.describe(stopped))
        .collect();
    assert!(
        failed.is_empty(),
        "no failed request (every one answered 200) across the outage; {} of {} were not:\n{}",
        failed.len(),
        records.len(),
        failed.join("\n")
    );
    let fallback_while_down: Vec<String> = records
        .iter()
        .filter(|r| r.sent < restarted && !r.is_primary_success())
        .map(|r| r.describe(stopped))
        .collect();
    assert!(
        fallback_while_down.is_empty(),
        "while Redis is down the last snapshot serves every request (fallback_used false):\n{}",
        fallback_while_down.join("\n")
    );
    let fallback_after = records
        .iter()
        .filter(|r| r.sent >= restarted && !r.is_primary_success())
        .count();
    eprintln!(
        "redis outage: {} requests, degraded after {degraded_after:?}, healthy {:?} after restart, \
         {fallback_after} fallback answers after the restart",
        records.len(),
        recovered.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_empty_does_not_empty_a_pool_of_healthy_instances() {
    // A long TTL: the instances heartbeat every ~10 s, so when Redis returns empty (a restart
    // without persistence, as `docker restart redis` in the lab) they register again only
    // seconds later. Meanwhile both are alive and pass the gateway's health checks.
    let (mut redis, _a, _b, gw) = registry_stack(30_000).await;
    let traffic = Traffic::start(&gw, Duration::from_millis(50));
    let warm = poll(
        Duration::from_secs(5),
        || async { traffic.records().len() },
        |n| *n >= 5,
    )
    .await;
    assert!(warm.ok, "traffic flows");

    let (stopped, _) = stop_until_degraded(&mut redis, &gw).await;
    tokio::time::sleep_until((stopped + Duration::from_secs(1)).into()).await;
    redis.start_again().await;
    let restarted = Instant::now();

    // Watch the 2 s after Redis returns.
    let mut available = Vec::new();
    while restarted.elapsed() < Duration::from_secs(2) {
        available.push(gw.available_services().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = traffic.stop().await;

    let failed: Vec<String> = records
        .iter()
        .filter(|r| r.answer.as_ref().map_or(true, |a| a.status != 200))
        .map(|r| r.describe(restarted))
        .collect();
    assert!(
        failed.is_empty(),
        "every request answered 200:\n{}",
        failed.join("\n")
    );
    let fallbacks: Vec<String> = records
        .iter()
        .filter(|r| !r.is_primary_success())
        .map(|r| r.describe(restarted))
        .collect();
    assert!(
        fallbacks.is_empty() && available.iter().all(|n| *n == Some(2)),
        "Redis back but empty: both healthy instances stay in the pool until they register \
         again; available_services after the restart {available:?}; {} of {} answers were \
         fallbacks (t relative to the restart):\n{}",
        fallbacks.len(),
        records.len(),
        fallbacks.join("\n")
    );
}

/// The shape `scripts/run-local.sh` runs: static URLs *and* the same instances registered in
/// Redis (the registry entry takes over the static one, with another id). Traffic sent as
/// soon as the gateway is ready is served by the instances, never by a fallback, and the
/// pool breaker stays closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_and_registered_instances_serve_from_the_first_request() {
    let redis = RedisServer::start().await;
    let a = LlmService::builder()
        .registry(&redis.url(), 3000)
        .start()
        .await;
    let b = LlmService::builder()
        .registry(&redis.url(), 3000)
        .start()
        .await;
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .redis(&redis.url())
        .env("HEALTH_CHECK_INTERVAL_MS", 2000)
        .env("DISCOVERY_REFRESH_MS", 300)
        .start()
        .await;
    let traffic = Traffic::start(&gw, Duration::from_millis(25));
    tokio::time::sleep(Duration::from_secs(3)).await; // a window of traffic, not a wait
    let records = traffic.stop().await;
    assert!(records.len() > 20, "{} requests", records.len());
    let origin = records.first().map(|r| r.sent).unwrap_or_else(Instant::now);
    let fallbacks: Vec<String> = records
        .iter()
        .filter(|r| !r.is_primary_success())
        .map(|r| r.describe(origin))
        .collect();
    assert!(
        fallbacks.is_empty(),
        "answers not from the instances: {fallbacks:?}"
    );
    assert_eq!(gw.breaker_state().await, "CLOSED");
}

/// Start order does not matter (podman-compose starts every container at once, whatever
/// `depends_on` says): an llm-service and the gateway started before Redis come up, serve and
/// read `degraded`; once Redis arrives the llm-service registers and the gateway finds it,
/// with no restart of either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_arriving_last_is_found_without_a_restart() {
    let mut redis = RedisServer::start().await;
    // Its port, with nothing listening on it yet.
    redis.stop().await;
    let llm = LlmService::builder()
        .registry(&redis.url(), 2_000)
        .start()
        .await;
    let gw = Gateway::builder().redis(&redis.url()).start().await;

    let (status, before) = gw.health().await;
    assert_eq!(status, 200, "degraded answers 200: {before}");
    assert_eq!(
        before["overall_status"], "degraded",
        "no Redis yet: {before}"
    );
    assert_eq!(
        gw.ready_status().await,
        Some(200),
        "the gateway is up before Redis"
    );
    let answer = gw.generate("before redis").await;
    assert_eq!(
        answer.status, 200,
        "answered from a fallback tier: {:?}",
        answer.body
    );
    assert_eq!(answer.fallback_used(), Some(true), "no instance known yet");

    redis.start_again().await;
    let arrived = Instant::now();
    let found = poll(
        Duration::from_secs(20),
        || gw.available_services(),
        |n| *n == Some(1),
    )
    .await;
    assert!(
        found.ok,
        "the llm-service registered and the gateway found it within 20 s of Redis arriving: {:?}",
        found.value
    );
    let healthy = poll(
        Duration::from_secs(10),
        || async { gw.health().await.1["overall_status"].clone() },
        |s| s == "healthy",
    )
    .await;
    assert!(healthy.ok, "healthy once Redis is there: {}", healthy.value);
    let answer = gw.generate("after redis").await;
    assert!(
        answer.is_primary_success() && answer.served_by() == llm.service_id,
        "served by the llm-service found through Redis: {:?}",
        answer.body
    );
    eprintln!(
        "redis arriving last: found after {:?}, healthy after {:?}",
        found.took,
        arrived.elapsed()
    );
}
