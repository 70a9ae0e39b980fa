//! Failover inside the primary pool: an instance killed with `kill -9` under steady traffic,
//! and an instance that hangs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Gateway, GatewayExt, LlmExt, LlmService, Traffic, poll};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_under_steady_traffic() {
    let a = LlmService::builder().start().await;
    let mut b = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a, &b]).start().await;
    let two = poll(
        Duration::from_secs(5),
        || gw.available_services(),
        |n| *n == Some(2),
    )
    .await;
    assert!(
        two.ok,
        "two services available before the kill: {:?}",
        two.value
    );

    let traffic = Traffic::start(&gw, Duration::from_millis(20));
    // Both serve before the kill.
    let both = poll(
        Duration::from_secs(5),
        || async { traffic.records() },
        |records| {
            let served = |s: &LlmService| {
                records.iter().any(|r| {
                    r.answer
                        .as_ref()
                        .is_ok_and(|a| a.is_primary_success() && s.is(a.served_by()))
                })
            };
            served(&a) && served(&b)
        },
    )
    .await;
    assert!(both.ok, "both instances served traffic before the kill");

    b.kill9().await;
    let killed = Instant::now();

    let one = poll(
        Duration::from_secs(10),
        || gw.available_services(),
        |n| *n == Some(1),
    )
    .await;
    assert!(
        one.ok,
        "available_services goes 2 → 1 within 10 s of the kill; it read {:?}",
        one.value
    );
    let down_after = killed.elapsed();
    let (_, health) = gw.health().await;
    let dead = health["service_discovery"]["services"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(&b.url))
        })
        .cloned();
    if let Some(dead) = dead {
        assert_eq!(
            dead["healthy"], false,
            "the dead instance reads unhealthy: {dead}"
        );
    }

    // Keep the traffic going until 5.5 s after the kill.
    // From 5 s after the kill on, nothing is routed to the dead one: its errors in the
    // gateway's `llm_errors_total` stop growing (what an operator sees) over one more second.
    let quiet_from = killed + Duration::from_secs(5);
    tokio::time::sleep_until(quiet_from.into()).await;
    let errors_at_5s = gw.errors_of(&b).await;
    tokio::time::sleep_until((killed + Duration::from_secs(6)).into()).await;
    let errors_at_6s = gw.errors_of(&b).await;
    assert_eq!(
        errors_at_5s, errors_at_6s,
        "llm_errors_total for the dead instance stops growing 5 s after the kill"
    );

    // Counted from the restart's start: the gateway may route to the instance as soon as it
    // answers its health check, before `restart_on_same_port` returns.
    let restarted = Instant::now();
    b.restart_on_same_port().await;
    let back = poll(
        Duration::from_secs(10),
        || gw.available_services(),
        |n| *n == Some(2),
    )
    .await;
    assert!(
        back.ok,
        "available_services back to 2 within 10 s of the restart; it read {:?}",
        back.value
    );
    let served_again = poll(
        Duration::from_secs(5),
        || async { traffic.records() },
        |records| {
            records.iter().any(|r| {
                r.sent >= restarted
                    && r.answer
                        .as_ref()
                        .is_ok_and(|a| a.is_primary_success() && b.is(a.served_by()))
            })
        },
    )
    .await;
    let records = traffic.stop().await;

    let origin = killed;
    let failed: Vec<String> = records
        .iter()
        .filter(|r| !r.is_primary_success())
        .map(|r| r.describe(origin))
        .collect();
    assert!(
        failed.is_empty(),
        "every request answered 200 by the pool (fallback_used false); {} of {} were not:\n{}",
        failed.len(),
        records.len(),
        failed.join("\n")
    );
    let to_dead: Vec<String> = records
        .iter()
        .filter(|r| r.sent >= quiet_from && r.sent < restarted)
        .filter(|r| r.answer.as_ref().is_ok_and(|a| b.is(a.served_by())))
        .map(|r| r.describe(origin))
        .collect();
    assert!(
        to_dead.is_empty(),
        "nothing served_by the dead one 5 s after the kill: {to_dead:?}"
    );
    let after_kill = records
        .iter()
        .filter(|r| r.sent >= killed && r.sent < restarted)
        .count();
    assert!(
        after_kill >= 50,
        "steady traffic while b was dead: only {after_kill} requests"
    );
    assert!(
        served_again.ok,
        "the restarted instance serves again within 5 s of being available"
    );
    eprintln!(
        "kill -9: {} requests, available_services 2→1 after {down_after:?}, 1→2 after {:?} from restart, \
         llm_errors_total of the dead one {errors_at_5s} at +5 s",
        records.len(),
        back.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_instance_is_bypassed_within_the_per_try_timeout() {
    const PER_TRY_MS: u64 = 500;
    let hanging = LlmService::builder().start().await;
    let healthy = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&hanging, &healthy])
        .per_try_timeout_ms(PER_TRY_MS)
        .env("REQUEST_TIMEOUT", 5)
        .start()
        .await;
    hanging.add_fault(json!({"kind": "hang"})).await;

    let limit = Duration::from_millis(PER_TRY_MS + 1_000);
    let mut slowest = Duration::ZERO;
    let mut waited_on_hang = 0;
    for n in 0..12 {
        let answer = gw.generate(&format!("hang bypass {n}")).await;
        assert!(
            answer.is_primary_success(),
            "request {n} served by the pool despite the hang: {answer:?}"
        );
        assert!(
            healthy.is(answer.served_by()),
            "request {n} served by the healthy instance, got {:?}",
            answer.served_by()
        );
        assert!(
            answer.elapsed < limit,
            "request {n} completes within per-try timeout + 1 s ({limit:?}), took {:?}",
            answer.elapsed
        );
        if answer.elapsed >= Duration::from_millis(PER_TRY_MS * 8 / 10) {
            waited_on_hang += 1;
        }
        slowest = slowest.max(answer.elapsed);
    }
    // Not vacuous: at least one request went to the hanging instance first and was retried.
    assert!(
        waited_on_hang >= 1,
        "at least one request tried the hanging instance (none took ≥ 0.8 × per-try; slowest {slowest:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_leaves_the_pool_within_5_s_without_traffic_at_default_settings() {
    let a = LlmService::builder().start().await;
    let mut b = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .env("HEALTH_CHECK_INTERVAL_MS", 5000)
        .start()
        .await;
    let two = poll(
        Duration::from_secs(6),
        || gw.available_services(),
        |n| *n == Some(2),
    )
    .await;
    assert!(two.ok, "{:?}", two.value);
    b.kill9().await;
    let killed = Instant::now();
    let one = poll(
        Duration::from_secs(6),
        || gw.available_services(),
        |n| *n == Some(1),
    )
    .await;
    assert!(one.ok, "still {:?}", one.value);
    assert!(
        killed.elapsed() <= Duration::from_millis(5500),
        "left the pool after {:?}",
        killed.elapsed()
    );
}
