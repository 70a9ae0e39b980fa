use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::health::{
    CheckOutcome, CompositeHealthChecker, FnCheck, HealthCheck, HealthStatus, RedisPingCheck,
};

const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";
const CLOSED_PORT: &str = "redis://127.0.0.1:1";

#[tokio::test]
async fn fn_check_runs_its_closure_on_every_check() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let check = FnCheck::new("db", true, move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                CheckOutcome::healthy()
            } else {
                CheckOutcome::unhealthy(format!("run {n}"))
            }
        }
    });
    assert_eq!(check.name(), "db");
    assert!(check.critical());
    assert_eq!(check.check().await.status, HealthStatus::Healthy);
    let second = check.check().await;
    assert_eq!(second.status, HealthStatus::Unhealthy);
    assert_eq!(second.message.as_deref(), Some("run 1"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn redis_ping_against_the_local_redis_is_healthy() {
    let by_url = RedisPingCheck::from_url(LOCAL_REDIS).unwrap();
    assert_eq!(by_url.name(), "redis");
    assert!(
        !by_url.critical(),
        "losing Redis degrades, never stops traffic"
    );
    let outcome = by_url.check().await;
    assert_eq!(
        outcome.status,
        HealthStatus::Healthy,
        "{:?}",
        outcome.message
    );
    assert!(outcome.details.unwrap()["latency_ms"].is_u64());
    let again = by_url.check().await;
    assert_eq!(
        again.status,
        HealthStatus::Healthy,
        "the cached connection is reused"
    );

    let manager = redis::Client::open(LOCAL_REDIS)
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let by_manager = RedisPingCheck::new(manager)
        .with_name("cache")
        .with_critical(true);
    assert_eq!(by_manager.name(), "cache");
    assert!(by_manager.critical());
    assert_eq!(by_manager.check().await.status, HealthStatus::Healthy);
}

#[tokio::test]
async fn redis_ping_against_a_closed_port_is_unhealthy_quickly() {
    let check = RedisPingCheck::from_url(CLOSED_PORT)
        .unwrap()
        .with_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let outcome = check.check().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcome.status, HealthStatus::Unhealthy);
    assert!(!outcome.message.unwrap_or_default().is_empty());

    let report = CompositeHealthChecker::new()
        .with_check(check)
        .check()
        .await;
    assert_eq!(
        report.overall_status,
        HealthStatus::Degraded,
        "non-critical by default"
    );
    assert_eq!(report.http_status(), 200);
}

#[test]
fn a_malformed_redis_url_is_refused() {
    assert!(RedisPingCheck::from_url("not a url").is_err());
}
