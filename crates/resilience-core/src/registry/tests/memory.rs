use std::sync::Arc;
use std::time::Duration;

use super::llm;
use crate::clock::{Clock, ManualClock, unix_millis};
use crate::error::Error;
use crate::registry::{InstanceSource, LLM_SERVICE, MemoryRegistry, ServiceRegistry};

const TTL: Duration = Duration::from_secs(10);

fn registry() -> (Arc<ManualClock>, MemoryRegistry) {
    let clock = ManualClock::new();
    (Arc::clone(&clock), MemoryRegistry::new(clock))
}

#[tokio::test]
async fn registered_instance_is_listed_with_its_metadata() {
    let (clock, registry) = registry();
    registry.register(&llm("llm-1", 8001), TTL).await.unwrap();
    let listed = registry.list(LLM_SERVICE).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "llm-1");
    assert_eq!(listed[0].model(), Some("model-llm-1"));
    assert_eq!(listed[0].source, InstanceSource::Registry);
    assert_eq!(listed[0].registered_at_ms, unix_millis(clock.wall()));
    assert_eq!(registry.backend(), "memory");
}

#[tokio::test]
async fn register_stores_the_normalized_url() {
    let (_clock, registry) = registry();
    let mut instance = llm("llm-1", 8001);
    instance.url = "HTTP://127.0.0.1:8001/".to_owned();
    registry.register(&instance, TTL).await.unwrap();
    assert_eq!(
        registry.list(LLM_SERVICE).await.unwrap()[0].url,
        "http://127.0.0.1:8001"
    );
}

#[tokio::test]
async fn entry_expires_after_its_ttl_without_heartbeat() {
    let (clock, registry) = registry();
    registry.register(&llm("llm-1", 8001), TTL).await.unwrap();
    clock.advance(TTL - Duration::from_millis(1));
    assert_eq!(registry.list(LLM_SERVICE).await.unwrap().len(), 1);
    clock.advance(Duration::from_millis(1));
    assert!(registry.list(LLM_SERVICE).await.unwrap().is_empty());
    assert_eq!(registry.live_count(), 0);
}

#[tokio::test]
async fn heartbeat_extends_the_entry_past_its_original_ttl() {
    let (clock, registry) = registry();
    registry.register(&llm("llm-1", 8001), TTL).await.unwrap();
    for _ in 0..5 {
        clock.advance(TTL / 2);
        assert!(registry.heartbeat(LLM_SERVICE, "llm-1", TTL).await.unwrap());
    }
    assert_eq!(clock.elapsed(), TTL * 5 / 2);
    assert_eq!(registry.list(LLM_SERVICE).await.unwrap().len(), 1);
}

#[tokio::test]
async fn heartbeat_on_expired_or_unknown_entry_returns_false() {
    let (clock, registry) = registry();
    assert!(!registry.heartbeat(LLM_SERVICE, "ghost", TTL).await.unwrap());
    registry.register(&llm("llm-1", 8001), TTL).await.unwrap();
    clock.advance(TTL);
    assert!(!registry.heartbeat(LLM_SERVICE, "llm-1", TTL).await.unwrap());
    assert!(
        registry.list(LLM_SERVICE).await.unwrap().is_empty(),
        "no resurrection"
    );
}

#[tokio::test]
async fn deregister_removes_the_entry_and_is_idempotent() {
    let (_clock, registry) = registry();
    registry.register(&llm("llm-1", 8001), TTL).await.unwrap();
    registry.register(&llm("llm-2", 8002), TTL).await.unwrap();
    registry.deregister(LLM_SERVICE, "llm-1").await.unwrap();
    registry.deregister(LLM_SERVICE, "llm-1").await.unwrap();
    let ids: Vec<_> = registry
        .list(LLM_SERVICE)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["llm-2"]);
}

#[tokio::test]
async fn list_is_sorted_by_id_and_scoped_to_the_service() {
    let (_clock, registry) = registry();
    for (id, port) in [("c", 3), ("a", 1), ("b", 2)] {
        registry.register(&llm(id, port), TTL).await.unwrap();
    }
    let mut other = llm("z", 9);
    other.service = "embedder".to_owned();
    registry.register(&other, TTL).await.unwrap();
    let ids: Vec<_> = registry
        .list(LLM_SERVICE)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(registry.list("embedder").await.unwrap().len(), 1);
    assert!(registry.list("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn re_registering_replaces_the_entry_and_restamps_it() {
    let (clock, registry) = registry();
    registry.register(&llm("llm-1", 8001), TTL).await.unwrap();
    clock.advance(Duration::from_secs(3));
    registry
        .register(&llm("llm-1", 9001).with_metadata("tier", "secondary"), TTL)
        .await
        .unwrap();
    let listed = registry.list(LLM_SERVICE).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].url, "http://127.0.0.1:9001");
    assert_eq!(listed[0].tier(), "secondary");
    assert_eq!(listed[0].registered_at_ms, unix_millis(clock.wall()));
}

#[tokio::test]
async fn sub_millisecond_ttl_and_bad_instances_are_rejected() {
    let (_clock, registry) = registry();
    let short = registry
        .register(&llm("llm-1", 8001), Duration::from_micros(10))
        .await;
    assert!(
        matches!(short, Err(Error::InvalidConfig { .. })),
        "{short:?}"
    );
    let mut bad = llm("llm-1", 8001);
    bad.url = "not a url".to_owned();
    let bad = registry.register(&bad, TTL).await;
    assert!(matches!(&bad, Err(Error::InvalidConfig { setting, .. }) if setting == "instance.url"));
    let endless = registry.register(&llm("llm-1", 8001), Duration::MAX).await;
    assert!(
        matches!(&endless, Err(Error::InvalidConfig { setting, .. }) if setting == "registry ttl")
    );
    let mut colon = llm("llm-1", 8001);
    colon.service = "llm:service".to_owned();
    let colon = registry.register(&colon, TTL).await;
    assert!(
        matches!(&colon, Err(Error::InvalidConfig { setting, .. }) if setting == "instance.service")
    );
    assert_eq!(registry.live_count(), 0);
}

#[tokio::test]
async fn works_as_a_shared_trait_object() {
    let (_clock, registry) = registry();
    let shared: Arc<dyn ServiceRegistry> = Arc::new(registry);
    let clone = Arc::clone(&shared);
    tokio::spawn(async move { clone.register(&llm("llm-1", 8001), TTL).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared.list(LLM_SERVICE).await.unwrap().len(), 1);
}
