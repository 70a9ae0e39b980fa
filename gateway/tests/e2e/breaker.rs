//! The pool breaker (the lab's "circuit breaker"): CLOSED → OPEN after the threshold of
//! failed requests, fast fallbacks while OPEN, HALF_OPEN when read after the recovery
//! timeout, CLOSED once two probes in a row succeed; every transition in `/admin/status`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::contract::assert_success_envelope;
use crate::harness::{Gateway, GatewayExt, LlmExt, LlmService, poll};

const THRESHOLD: u32 = 3;
const RECOVERY_S: u64 = 2;

fn error_500() -> Value {
    json!({"kind": "error", "status": 500, "rate": 1.0})
}

/// Fails `THRESHOLD` requests on every instance of `upstreams` so the pool breaker opens,
/// then heals the instances (the breaker stays OPEN until its recovery timeout or a reset).
async fn trip(gw: &Gateway, upstreams: &[&LlmService], label: &str) {
    for llm in upstreams {
        llm.add_fault(error_500()).await;
    }
    for n in 0..THRESHOLD {
        gw.generate(&format!("{label} {n} zq")).await;
    }
    assert_eq!(
        gw.breaker_state().await,
        "OPEN",
        "OPEN after {THRESHOLD} failures"
    );
    for llm in upstreams {
        llm.clear_faults().await;
    }
}

/// The pool breaker's transitions: those of the breaker that is none of the instances.
fn pool_transitions(admin: &Value, instances: &[&LlmService]) -> Vec<Value> {
    let transitions = admin["transitions"].as_array().cloned().unwrap_or_default();
    transitions
        .into_iter()
        .filter(|t| {
            let name = t["breaker"].as_str().unwrap_or("");
            !instances.iter().any(|s| {
                name.contains(&s.service_id) || name.contains(&format!("127.0.0.1:{}", s.port))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_breaker_opens_half_opens_and_closes_with_timed_transitions() {
    let a = LlmService::builder().start().await;
    let b = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .breaker(THRESHOLD, RECOVERY_S)
        .start()
        .await;
    assert_eq!(gw.breaker_state().await, "CLOSED", "CLOSED at start");
    a.add_fault(error_500()).await;
    b.add_fault(error_500()).await;

    // THRESHOLD failed requests open it, not one fewer.
    for n in 1..=THRESHOLD {
        let answer = gw.generate(&format!("breaker trip {n} zq")).await;
        let data = assert_success_envelope(&answer);
        assert_eq!(
            data["fallback_used"], true,
            "request {n} with every instance failing is a fallback: {}",
            answer.body
        );
        let state = gw.breaker_state().await;
        if n < THRESHOLD {
            assert_eq!(
                state, "CLOSED",
                "still CLOSED after {n} of {THRESHOLD} failures"
            );
        } else {
            assert_eq!(state, "OPEN", "OPEN after {THRESHOLD} failed requests");
        }
    }
    let opened = Instant::now();
    let (_, health) = gw.health().await;
    assert_eq!(
        health["circuit_breaker"]["state"], "OPEN",
        "/health agrees: {health}"
    );

    // While OPEN: fallbacks in < 100 ms, and the pool is left alone.
    let upstream_before = a.generate_count().await + b.generate_count().await;
    for n in 0..5 {
        let answer = gw.generate(&format!("while open {n} zq")).await;
        let data = assert_success_envelope(&answer);
        assert_eq!(
            data["fallback_used"], true,
            "a fallback while OPEN: {}",
            answer.body
        );
        assert_eq!(
            data["fallback_reason"], "circuit_open",
            "fallback_reason while OPEN: {}",
            answer.body
        );
        assert!(
            answer.elapsed < Duration::from_millis(100),
            "a fallback while OPEN takes < 100 ms, took {:?}",
            answer.elapsed
        );
    }
    let upstream_after = a.generate_count().await + b.generate_count().await;
    assert_eq!(
        upstream_before, upstream_after,
        "no /generate reaches the pool while the breaker is OPEN"
    );

    // HALF_OPEN once the recovery timeout has passed, with no request needed.
    let half = poll(
        Duration::from_secs(RECOVERY_S + 2),
        || gw.breaker_state(),
        |s| s != "OPEN",
    )
    .await;
    let open_for = opened.elapsed();
    assert_eq!(
        half.value, "HALF_OPEN",
        "HALF_OPEN read after the recovery timeout without any request (after {open_for:?})"
    );
    assert!(
        open_for >= Duration::from_millis(RECOVERY_S * 1000 - 300),
        "OPEN for the recovery timeout ({RECOVERY_S} s), read HALF_OPEN after {open_for:?}"
    );

    // Faults gone: a few requests close it (two successful probes; see the test below).
    a.clear_faults().await;
    b.clear_faults().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answers = Vec::new();
    let mut state = String::new();
    while Instant::now() < deadline {
        answers.push(gw.generate("after recovery zq").await);
        state = gw.breaker_state().await;
        if state == "CLOSED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        state,
        "CLOSED",
        "CLOSED after the faults are gone and a few requests ({} sent); answers: {answers:?}",
        answers.len()
    );
    let answer = gw.generate("closed again zq").await;
    assert!(
        answer.is_primary_success(),
        "served by the pool again: {answer:?}"
    );

    // /admin/status lists CLOSED→OPEN, OPEN→HALF_OPEN, HALF_OPEN→CLOSED in time order.
    let admin = gw.admin_status().await;
    let transitions = pool_transitions(&admin, &[&a, &b]);
    let find = |from: &str, to: &str, after: i64| {
        transitions
            .iter()
            .filter(|t| t["from"] == from && t["to"] == to)
            .filter_map(|t| t["at_ms"].as_i64())
            .find(|at| *at >= after)
    };
    let to_open = find("CLOSED", "OPEN", i64::MIN);
    let to_half = to_open.and_then(|t| find("OPEN", "HALF_OPEN", t));
    let to_closed = to_half.and_then(|t| find("HALF_OPEN", "CLOSED", t));
    assert!(
        to_open.is_some() && to_half.is_some() && to_closed.is_some(),
        "the pool breaker's transitions CLOSED→OPEN, OPEN→HALF_OPEN, HALF_OPEN→CLOSED with `at_ms` in order; \
         found {to_open:?}, {to_half:?}, {to_closed:?} in {}",
        admin["transitions"]
    );
    let (to_open, to_half) = (to_open.unwrap(), to_half.unwrap());
    let recovery_ms = i64::try_from(RECOVERY_S * 1000).unwrap();
    assert!(
        to_half - to_open >= recovery_ms - 50,
        "OPEN→HALF_OPEN is stamped no earlier than the recovery timeout after CLOSED→OPEN: {} ms",
        to_half - to_open
    );
    eprintln!(
        "pool breaker: CLOSED→OPEN at {to_open}, OPEN→HALF_OPEN +{} ms, HALF_OPEN→CLOSED +{} ms",
        to_half - to_open,
        to_closed.unwrap() - to_open
    );
    for t in &transitions {
        assert!(
            t.get("reason").is_some_and(|r| !r.is_null()),
            "each transition has a reason: {t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_recovery_timeout_one_success_leaves_it_half_open_and_a_second_closes_it() {
    let a = LlmService::builder().start().await;
    let b = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .breaker(THRESHOLD, RECOVERY_S)
        .start()
        .await;
    trip(&gw, &[&a, &b], "two probes trip").await;
    // Both instances pass their health checks again, and the recovery timeout has passed.
    let healthy = poll(
        Duration::from_secs(5),
        || gw.available_services(),
        |n| *n == Some(2),
    )
    .await;
    assert!(
        healthy.ok,
        "both instances healthy again: {:?}",
        healthy.value
    );
    let half = poll(
        Duration::from_secs(RECOVERY_S + 2),
        || gw.breaker_state(),
        |s| s != "OPEN",
    )
    .await;
    assert_eq!(
        half.value, "HALF_OPEN",
        "HALF_OPEN after the recovery timeout"
    );

    let first = gw.generate("first probe zq").await;
    assert!(
        first.is_primary_success(),
        "the first probe is served by the pool: {first:?}"
    );
    assert_eq!(
        gw.breaker_state().await,
        "HALF_OPEN",
        "one successful probe does not close the pool breaker"
    );
    let second = gw.generate("second probe zq").await;
    assert!(
        second.is_primary_success(),
        "the second probe is served by the pool: {second:?}"
    );
    assert_eq!(
        gw.breaker_state().await,
        "CLOSED",
        "the second successful probe closes it"
    );

    let admin = gw.admin_status().await;
    let closed: Vec<Value> = pool_transitions(&admin, &[&a, &b])
        .into_iter()
        .filter(|t| t["from"] == "HALF_OPEN" && t["to"] == "CLOSED")
        .collect();
    assert_eq!(closed.len(), 1, "one HALF_OPEN→CLOSED: {closed:?}");
    assert_eq!(
        closed[0]["reason"]["count"], 2,
        "closed by two successful probes: {}",
        closed[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reset_closes_an_open_breaker() {
    let a = LlmService::builder().start().await;
    let b = LlmService::builder().start().await;
    // A long recovery timeout: only the reset can close it within the test.
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .breaker(THRESHOLD, 60)
        .start()
        .await;
    trip(&gw, &[&a, &b], "reset trip").await;

    let status = gw.reset_breaker().await;
    assert!(
        (200..300).contains(&status),
        "POST /admin/reset-circuit-breaker → 2xx, got {status}"
    );
    assert_eq!(
        gw.breaker_state().await,
        "CLOSED",
        "CLOSED right after the reset"
    );
    let answer = gw.generate("after reset zq").await;
    let data = assert_success_envelope(&answer);
    // Instance ejection may legitimately outlast the pool reset; say what served.
    eprintln!(
        "after reset: fallback_used={} served_by={}",
        data["fallback_used"], data["served_by"]
    );
}
