//! `Registration` under paused Tokio time; the memory registry's TTLs follow the same clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::sleep;

use super::llm;
use crate::error::Error;
use crate::registry::testing::{FlakyRegistry, Mode, TokioClock};
use crate::registry::{LLM_SERVICE, MemoryRegistry, Registration, ServiceRegistry};

const TTL: Duration = Duration::from_secs(3);
const INTERVAL: Duration = Duration::from_secs(1);

fn memory() -> Arc<MemoryRegistry> {
    Arc::new(MemoryRegistry::new(TokioClock::shared()))
}

async fn listed_ids(registry: &dyn ServiceRegistry) -> Vec<String> {
    registry
        .list(LLM_SERVICE)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn registers_at_once_and_stays_listed_for_many_ttls() {
    let registry = memory();
    let registration =
        Registration::spawn(registry.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    let first = registration.first_attempt().await;
    assert!(first.registered);
    assert_eq!(first.registrations, 1);
    assert_eq!(listed_ids(registry.as_ref()).await, ["llm-1"]);

    sleep(TTL * 5).await;
    assert_eq!(listed_ids(registry.as_ref()).await, ["llm-1"]);
    let status = registration.status();
    assert!(registration.is_registered());
    assert_eq!(status.registrations, 1, "heartbeats alone kept it alive");
    assert!(status.heartbeats >= 14, "{status:?}");
    assert_eq!(registration.last_error(), None);
}

#[tokio::test(start_paused = true)]
async fn re_registers_when_the_entry_vanished() {
    let registry = memory();
    let registration =
        Registration::spawn(registry.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    registration.first_attempt().await;
    // As after a Redis restart: the entry is gone, the owner is not told.
    registry.deregister(LLM_SERVICE, "llm-1").await.unwrap();
    assert!(listed_ids(registry.as_ref()).await.is_empty());

    sleep(INTERVAL + Duration::from_millis(10)).await;
    assert_eq!(listed_ids(registry.as_ref()).await, ["llm-1"]);
    assert_eq!(registration.status().registrations, 2);
}

#[tokio::test(start_paused = true)]
async fn keeps_trying_through_failures_and_recovers() {
    let flaky = FlakyRegistry::new(memory());
    flaky.set(Mode::Failing);
    let registration =
        Registration::spawn(flaky.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    let first = registration.first_attempt().await;
    assert!(!first.registered);
    assert_eq!(first.consecutive_failures, 1);
    assert!(
        first.last_error.as_deref().unwrap().contains("redis"),
        "{first:?}"
    );

    sleep(INTERVAL * 3).await;
    assert!(registration.status().consecutive_failures >= 3);
    assert!(listed_ids(flaky.inner.as_ref()).await.is_empty());

    flaky.set(Mode::Healthy);
    sleep(INTERVAL).await;
    let status = registration.status();
    assert!(status.registered, "{status:?}");
    assert_eq!(status.consecutive_failures, 0);
    assert!(
        status.last_error.is_some(),
        "the last failure stays visible"
    );
    assert_eq!(listed_ids(flaky.inner.as_ref()).await, ["llm-1"]);
}

#[tokio::test(start_paused = true)]
async fn re_registers_after_an_outage_longer_than_the_ttl() {
    let flaky = FlakyRegistry::new(memory());
    let registration =
        Registration::spawn(flaky.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    registration.first_attempt().await;
    flaky.set(Mode::Failing);
    sleep(TTL + INTERVAL).await;
    assert!(
        listed_ids(flaky.inner.as_ref()).await.is_empty(),
        "expired during the outage"
    );

    flaky.set(Mode::Healthy);
    sleep(INTERVAL * 2).await;
    assert_eq!(listed_ids(flaky.inner.as_ref()).await, ["llm-1"]);
    assert_eq!(registration.status().registrations, 2);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_backend_is_bounded_by_the_interval() {
    let flaky = FlakyRegistry::new(memory());
    flaky.set(Mode::Hanging);
    let registration =
        Registration::spawn(flaky.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    let first = registration.first_attempt().await;
    assert!(!first.registered);
    assert!(
        first.last_error.as_deref().unwrap().contains("timed out"),
        "{first:?}"
    );
    sleep(INTERVAL * 4).await;
    assert!(registration.status().attempts >= 3, "the cadence goes on");
}

#[tokio::test(start_paused = true)]
async fn deregister_deletes_the_entry_and_stops_heartbeats() {
    let flaky = FlakyRegistry::new(memory());
    let registration =
        Registration::spawn(flaky.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    registration.first_attempt().await;
    sleep(INTERVAL * 2).await;
    registration.deregister().await.unwrap();
    assert!(listed_ids(flaky.inner.as_ref()).await.is_empty());

    let calls = flaky.calls.load(Ordering::SeqCst);
    sleep(TTL * 2).await;
    assert_eq!(
        flaky.calls.load(Ordering::SeqCst),
        calls,
        "no call after deregistration"
    );
    assert!(
        listed_ids(flaky.inner.as_ref()).await.is_empty(),
        "not re-registered"
    );
}

#[tokio::test(start_paused = true)]
async fn deregister_reports_a_backend_failure() {
    let flaky = FlakyRegistry::new(memory());
    let registration =
        Registration::spawn(flaky.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    registration.first_attempt().await;
    flaky.set(Mode::Hanging);
    let outcome = registration.deregister().await;
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn dropping_stops_heartbeats_and_the_entry_expires() {
    let registry = memory();
    let registration =
        Registration::spawn(registry.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    registration.first_attempt().await;
    drop(registration);
    sleep(TTL + INTERVAL).await;
    assert!(listed_ids(registry.as_ref()).await.is_empty());
}

#[tokio::test]
async fn interval_must_be_positive_and_shorter_than_the_ttl() {
    for interval in [Duration::ZERO, TTL, TTL * 2] {
        let outcome = Registration::spawn(memory(), llm("llm-1", 8001), TTL, interval);
        assert!(
            matches!(outcome, Err(Error::InvalidConfig { .. })),
            "{interval:?}"
        );
    }
    let outcome = Registration::spawn(memory(), llm("llm-1", 8001), Duration::ZERO, INTERVAL);
    assert!(matches!(outcome, Err(Error::InvalidConfig { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_bad_instance_is_refused_up_front_not_retried_forever() {
    let mut bad = llm("llm-1", 8001);
    bad.url = "ftp://nowhere".to_owned();
    let outcome = Registration::spawn(memory(), bad, TTL, INTERVAL);
    assert!(
        matches!(&outcome, Err(Error::InvalidConfig { setting, .. }) if setting == "instance.url"),
        "{:?}",
        outcome.err()
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_failure_it_retries_sooner_than_the_interval_backing_off() {
    let flaky = FlakyRegistry::new(memory());
    flaky.set(Mode::Failing);
    let registration =
        Registration::spawn(flaky.clone(), llm("llm-1", 8001), TTL, INTERVAL).unwrap();
    registration.first_attempt().await;
    // Retries after ~0.1–0.2 s, ~0.2–0.4 s, ~0.4–0.8 s: at least three within one interval.
    sleep(INTERVAL).await;
    let attempts = registration.status().attempts;
    assert!(
        (3..=5).contains(&attempts),
        "{attempts} attempts in one interval"
    );
    // Then the backoff reaches the interval: one retry every half to whole interval.
    sleep(INTERVAL * 10).await;
    let more = registration.status().attempts - attempts;
    assert!(
        (9..=21).contains(&more),
        "{more} more attempts in 10 intervals"
    );
    // Recovery is quick: the next retry comes within an interval.
    flaky.set(Mode::Healthy);
    sleep(INTERVAL + Duration::from_millis(10)).await;
    assert!(registration.is_registered());
}

#[test]
fn the_retry_wait_grows_from_200_ms_to_the_interval() {
    use crate::registry::heartbeat::next_wait;
    let interval = Duration::from_secs(5);
    assert_eq!(
        next_wait(interval, 0, 0.7),
        interval,
        "healthy: the heartbeat interval"
    );
    assert_eq!(next_wait(interval, 1, 0.0), Duration::from_millis(100));
    assert_eq!(next_wait(interval, 1, 1.0), Duration::from_millis(200));
    assert_eq!(next_wait(interval, 3, 1.0), Duration::from_millis(800));
    assert_eq!(
        next_wait(interval, 30, 1.0),
        interval,
        "capped at the interval"
    );
    assert!(next_wait(interval, 30, 0.0) >= interval / 2);
    let short = Duration::from_millis(100);
    assert_eq!(
        next_wait(short, 1, 1.0),
        short,
        "never longer than a short interval"
    );
}
