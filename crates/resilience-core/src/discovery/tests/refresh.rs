//! Refresh rounds driven by hand, with a `ManualClock` for TTLs and timestamps.

use std::sync::Arc;
use std::time::Duration;

use super::{configured, ids, registered};
use crate::clock::{Clock, ManualClock};
use crate::discovery::{DEFAULT_REFRESH_TIMEOUT, DiscoveryClient};
use crate::error::Error;
use crate::registry::testing::{FlakyRegistry, Mode};
use crate::registry::{Instance, InstanceSource, LLM_SERVICE, MemoryRegistry, ServiceRegistry};

const TTL: Duration = Duration::from_secs(5);

struct Fixture {
    clock: Arc<ManualClock>,
    flaky: Arc<FlakyRegistry>,
    client: DiscoveryClient,
}

impl Fixture {
    fn new(statics: Vec<Instance>) -> Self {
        let clock = ManualClock::new();
        let flaky = FlakyRegistry::new(Arc::new(MemoryRegistry::new(clock.clone())));
        let client = DiscoveryClient::new(LLM_SERVICE, statics)
            .unwrap()
            .with_registry(flaky.clone())
            .with_clock(clock.clone());
        Self {
            clock,
            flaky,
            client,
        }
    }

    async fn register(&self, instance: &Instance) {
        self.flaky.inner.register(instance, TTL).await.unwrap();
    }
}

#[tokio::test]
async fn static_only_client_serves_the_static_list_and_is_never_stale() {
    let clock = ManualClock::new();
    let client = DiscoveryClient::new(LLM_SERVICE, vec![configured(8001), configured(8002)])
        .unwrap()
        .with_clock(clock.clone());
    assert_eq!(client.registry_backend(), None);
    assert_eq!(
        ids(client.snapshot().instances()),
        ["127.0.0.1:8001", "127.0.0.1:8002"]
    );
    client.refresh().await.unwrap();
    let snapshot = client.snapshot();
    assert!(!snapshot.is_stale());
    assert_eq!(snapshot.len(), 2);
    assert_eq!(snapshot.generation, 1);
    assert_eq!(snapshot.last_refresh, Some(clock.now()));
}

#[tokio::test]
async fn static_instances_are_normalized_and_deduplicated_up_front() {
    let mut shouting = configured(8001);
    shouting.url = "HTTP://127.0.0.1:8001/".to_owned();
    let client = DiscoveryClient::new(LLM_SERVICE, vec![shouting, configured(8001)]).unwrap();
    assert_eq!(client.static_instances().len(), 1);
    assert_eq!(
        client.snapshot().instances()[0].url,
        "http://127.0.0.1:8001"
    );
    assert_eq!(
        client.snapshot().instances()[0].source,
        InstanceSource::Static
    );
}

#[tokio::test]
async fn an_invalid_static_instance_is_rejected() {
    let mut bad = configured(8001);
    bad.url = "localhost".to_owned();
    let outcome = DiscoveryClient::new(LLM_SERVICE, vec![bad]);
    assert!(
        matches!(outcome, Err(Error::InvalidConfig { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn readers_see_new_instances_only_after_a_refresh() {
    let fx = Fixture::new(vec![configured(9001)]);
    assert_eq!(fx.client.registry_backend(), Some("flaky"));
    let before = fx.client.snapshot();
    fx.register(&registered("llm-1", 8001)).await;
    assert_eq!(
        fx.client.snapshot().len(),
        1,
        "no registry call on the read path"
    );

    fx.client.refresh().await.unwrap();
    let after = fx.client.snapshot();
    assert_eq!(ids(after.instances()), ["127.0.0.1:9001", "llm-1"]);
    assert_eq!(
        after.find("llm-1").and_then(Instance::model),
        Some("model-llm-1")
    );
    assert_eq!(
        before.len(),
        1,
        "a snapshot already handed out never changes"
    );
    assert_eq!(after.generation, before.generation + 1);
}

#[tokio::test]
async fn registry_entry_wins_over_the_static_one_with_the_same_url() {
    let fx = Fixture::new(vec![configured(8001), configured(8002)]);
    fx.register(&registered("llm_service_1", 8001)).await;
    fx.client.refresh().await.unwrap();
    let snapshot = fx.client.snapshot();
    assert_eq!(
        ids(snapshot.instances()),
        ["llm_service_1", "127.0.0.1:8002"]
    );
    assert_eq!(snapshot.instances()[0].source, InstanceSource::Registry);
}

#[tokio::test]
async fn stale_snapshot_is_served_while_the_registry_fails_and_cleared_after() {
    let fx = Fixture::new(vec![configured(9001)]);
    fx.register(&registered("llm-1", 8001)).await;
    fx.client.refresh().await.unwrap();
    let good = fx.client.snapshot();
    let refreshed_at = fx.clock.now();

    fx.flaky.set(Mode::Failing);
    fx.clock.advance(Duration::from_secs(1));
    assert!(fx.client.refresh().await.is_err());
    fx.clock.advance(Duration::from_secs(1));
    let error = fx.client.refresh().await.unwrap_err();
    assert!(error.is_retryable());
    let stale = fx.client.snapshot();
    assert!(stale.is_stale());
    assert_eq!(
        stale.instances, good.instances,
        "the last good list is kept"
    );
    assert_eq!(stale.consecutive_failures, 2);
    assert!(
        stale.last_error.as_deref().unwrap().contains("redis"),
        "{stale:?}"
    );
    assert_eq!(stale.last_refresh, Some(refreshed_at));
    assert_eq!(stale.age(fx.clock.now()), Some(Duration::from_secs(2)));

    fx.flaky.set(Mode::Healthy);
    fx.client.refresh().await.unwrap();
    let fresh = fx.client.snapshot();
    assert!(!fresh.is_stale());
    assert_eq!(fresh.consecutive_failures, 0);
    assert_eq!(fresh.last_error, None);
    assert_eq!(fresh.last_refresh, Some(fx.clock.now()));
    assert_eq!(ids(fresh.instances()), ["127.0.0.1:9001", "llm-1"]);
}

#[tokio::test]
async fn a_failure_before_any_success_serves_the_static_list_as_stale() {
    let fx = Fixture::new(vec![configured(9001)]);
    fx.flaky.set(Mode::Failing);
    assert!(fx.client.refresh().await.is_err());
    let snapshot = fx.client.snapshot();
    assert!(snapshot.is_stale());
    assert_eq!(ids(snapshot.instances()), ["127.0.0.1:9001"]);
    assert_eq!(snapshot.last_refresh, None);
}

#[tokio::test]
async fn expired_and_deregistered_entries_disappear_on_refresh() {
    let fx = Fixture::new(Vec::new());
    fx.register(&registered("short", 8001)).await;
    fx.register(&registered("gone", 8002)).await;
    fx.client.refresh().await.unwrap();
    assert_eq!(fx.client.snapshot().len(), 2);

    fx.flaky
        .inner
        .deregister(LLM_SERVICE, "gone")
        .await
        .unwrap();
    fx.client.refresh().await.unwrap();
    assert_eq!(ids(fx.client.snapshot().instances()), ["short"]);

    fx.clock.advance(TTL);
    fx.client.refresh().await.unwrap();
    assert!(fx.client.snapshot().is_empty());
    assert!(
        !fx.client.snapshot().is_stale(),
        "an empty answer is not a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_registry_times_the_round_out() {
    let fx = Fixture::new(vec![configured(9001)]);
    let client = fx.client.with_refresh_timeout(Duration::from_millis(300));
    fx.flaky.set(Mode::Hanging);
    let started = tokio::time::Instant::now();
    let error = client.refresh().await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout { after_ms: 300, .. }),
        "{error:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert!(client.snapshot().is_stale());
}

#[tokio::test]
async fn each_round_publishes_a_new_generation_that_waiters_see() {
    let fx = Fixture::new(Vec::new());
    assert_eq!(fx.client.snapshot().generation, 0);
    fx.client.refresh().await.unwrap();
    fx.flaky.set(Mode::Failing);
    let _ = fx.client.refresh().await;
    fx.client.wait_for_generation(2).await;
    assert_eq!(fx.client.snapshot().generation, 2);
}

#[test]
fn snapshot_accessors_filter_by_tier_and_measure_age() {
    let clock = ManualClock::new();
    let snapshot = crate::discovery::DiscoverySnapshot {
        instances: vec![
            registered("a", 1),
            registered("b", 2).with_metadata("tier", "secondary"),
        ],
        last_refresh: Some(clock.now()),
        ..Default::default()
    };
    assert_eq!(
        snapshot
            .in_tier("primary")
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(snapshot.in_tier("secondary").count(), 1);
    assert!(snapshot.find("zz").is_none());
    clock.advance(Duration::from_secs(3));
    assert_eq!(snapshot.age(clock.now()), Some(Duration::from_secs(3)));
    assert_eq!(DEFAULT_REFRESH_TIMEOUT, Duration::from_secs(2));
}

#[tokio::test]
async fn with_a_grace_period_a_vanished_entry_stays_listed_for_that_long() {
    let fx = Fixture::new(Vec::new());
    let client = fx.client.with_grace(Duration::from_secs(10));
    fx.flaky
        .inner
        .register(&registered("kept", 8001), TTL)
        .await
        .unwrap();
    client.refresh().await.unwrap();
    // The registry restarts empty: nothing listed, but the instance was seen just now.
    fx.flaky
        .inner
        .deregister(LLM_SERVICE, "kept")
        .await
        .unwrap();
    client.refresh().await.unwrap();
    assert_eq!(ids(client.snapshot().instances()), ["kept"]);
    fx.clock.advance(Duration::from_secs(10));
    client.refresh().await.unwrap();
    assert_eq!(
        ids(client.snapshot().instances()),
        ["kept"],
        "exactly at the grace, still kept"
    );
    fx.clock.advance(Duration::from_millis(1));
    client.refresh().await.unwrap();
    assert!(client.snapshot().is_empty(), "past the grace, gone");
}

#[tokio::test]
async fn a_re_registered_instance_restarts_its_grace() {
    let fx = Fixture::new(Vec::new());
    let client = fx.client.with_grace(Duration::from_secs(10));
    fx.flaky
        .inner
        .register(&registered("back", 8001), TTL)
        .await
        .unwrap();
    client.refresh().await.unwrap();
    fx.flaky
        .inner
        .deregister(LLM_SERVICE, "back")
        .await
        .unwrap();
    fx.clock.advance(Duration::from_secs(8));
    client.refresh().await.unwrap();
    fx.flaky
        .inner
        .register(&registered("back", 8001), TTL)
        .await
        .unwrap();
    client.refresh().await.unwrap();
    fx.flaky
        .inner
        .deregister(LLM_SERVICE, "back")
        .await
        .unwrap();
    fx.clock.advance(Duration::from_secs(8));
    client.refresh().await.unwrap();
    assert_eq!(
        ids(client.snapshot().instances()),
        ["back"],
        "seen 8 s ago, not 16"
    );
}
