//! The chain feeding the response cache and the cache tier serving from it.

use std::sync::Arc;
use std::time::Duration;

use super::support::{Req, Scripted, Step, key, manual_cache, req, req_for, tier};
use crate::fallback::TierKind::{Cache, Primary, Secondary, Template};
use crate::fallback::{
    CacheProvider, CacheStore, FallbackChain, FallbackReason, ProviderError, ResponseCache, Tier,
};
use crate::policy::{AttemptFailure, FailureClass};

fn cache_tier(cache: &Arc<ResponseCache<String>>) -> Tier<Req, String> {
    Tier::new(Cache).with_provider(CacheProvider::new("memory", Arc::clone(cache), key))
}

#[tokio::test(start_paused = true)]
async fn primary_success_populates_the_cache_and_the_cache_tier_serves_it_later() {
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);
    let primary = Scripted::answering("pool", "AI is the study of intelligent machines.");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        cache_tier(&cache),
        tier(Template, &[&template]),
    ])
    .unwrap()
    .with_store(Arc::new(CacheStore::new(Arc::clone(&cache), key)));

    assert_eq!(
        chain.execute(&req("What is AI?")).await.unwrap().tier,
        Primary
    );
    primary.set(Step::Fail(ProviderError::Upstream(Box::new(
        AttemptFailure::new("test", FailureClass::ServerError, "500"),
    ))));
    let served = chain.execute(&req("  what is   ai ")).await.unwrap();

    assert_eq!((served.tier, served.provider.as_str()), (Cache, "memory"));
    assert_eq!(served.response, "AI is the study of intelligent machines.");
    assert_eq!(
        served.fallback_reason(),
        Some(FallbackReason::UpstreamError)
    );
    assert_eq!(template.calls(), 0);
    let stats = cache.stats();
    assert_eq!((stats.inserts, stats.hits), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn secondary_success_populates_the_cache_too() {
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);
    let primary = Scripted::failing("pool", ProviderError::CircuitOpen);
    let secondary = Scripted::answering("backup", "from secondary");
    let chain = FallbackChain::new([tier(Primary, &[&primary]), tier(Secondary, &[&secondary])])
        .unwrap()
        .with_store(Arc::new(CacheStore::new(Arc::clone(&cache), key)));

    chain.execute(&req_for("gpt-x", "hello")).await.unwrap();

    assert_eq!(
        cache
            .get(&key(&req_for("gpt-x", "Hello!")).unwrap())
            .as_deref(),
        Some("from secondary")
    );
}

#[tokio::test(start_paused = true)]
async fn cache_and_template_answers_are_not_stored_again() {
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);
    cache.insert_seeded(key(&req("hello")).unwrap(), "seeded hello".to_owned());
    let primary = Scripted::failing("pool", ProviderError::NoneAvailable);
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        cache_tier(&cache),
        tier(Template, &[&template]),
    ])
    .unwrap()
    .with_store(Arc::new(CacheStore::new(Arc::clone(&cache), key)));

    assert_eq!(chain.execute(&req("hello")).await.unwrap().tier, Cache);
    assert_eq!(
        chain.execute(&req("unknown question")).await.unwrap().tier,
        Template
    );

    assert_eq!(cache.stats().inserts, 0);
    assert!(cache.is_empty());
}

#[tokio::test(start_paused = true)]
async fn nothing_is_stored_when_the_key_function_declines() {
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);
    let primary = Scripted::answering("pool", "fresh");
    let chain = FallbackChain::new([tier(Primary, &[&primary])])
        .unwrap()
        .with_store(Arc::new(CacheStore::new(Arc::clone(&cache), |_: &Req| {
            None
        })));

    chain.execute(&req("hello")).await.unwrap();

    assert!(cache.is_empty());
}

#[tokio::test(start_paused = true)]
async fn cached_answer_expires_and_the_chain_falls_to_the_template() {
    let (clock, cache) = manual_cache(Duration::from_secs(60), 10);
    let primary = Scripted::answering("pool", "fresh");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        cache_tier(&cache),
        tier(Template, &[&template]),
    ])
    .unwrap()
    .with_store(Arc::new(CacheStore::new(Arc::clone(&cache), key)));

    chain.execute(&req("hello")).await.unwrap();
    primary.set(Step::Fail(ProviderError::CircuitOpen));
    clock.advance(Duration::from_secs(61));
    let served = chain.execute(&req("hello")).await.unwrap();

    assert_eq!(served.tier, Template);
    assert_eq!(served.failures[1].to_string(), "cache/memory: miss");
}

#[tokio::test(start_paused = true)]
async fn chain_stats_include_the_cache_counters() {
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);
    let primary = Scripted::answering("pool", "fresh");
    let chain = FallbackChain::new([tier(Primary, &[&primary])])
        .unwrap()
        .with_store(Arc::new(CacheStore::new(Arc::clone(&cache), key)));
    let without = FallbackChain::new([tier(Primary, &[&primary])]).unwrap();

    chain.execute(&req("hello")).await.unwrap();

    assert_eq!(chain.stats().cache.map(|c| c.inserts), Some(1));
    assert!(without.stats().cache.is_none());
    let json = serde_json::to_value(without.stats()).unwrap();
    assert!(json.get("cache").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_fresh_answer_is_stored_once_and_rewritten_after_half_its_ttl() {
    let (clock, cache) = manual_cache(Duration::from_secs(60), 10);
    let primary = Scripted::answering("pool", "first");
    let chain = FallbackChain::new([tier(Primary, &[&primary])])
        .unwrap()
        .with_store(Arc::new(CacheStore::new(Arc::clone(&cache), key)));
    let hello = key(&req("hello")).unwrap();

    for _ in 0..5 {
        chain.execute(&req("hello")).await.unwrap();
    }
    assert_eq!(cache.stats().inserts, 1, "one write for five answers");
    primary.set(Step::Answer("second".to_owned()));
    chain.execute(&req("hello")).await.unwrap();
    assert_eq!(cache.get(&hello).as_deref(), Some("first"), "still fresh");

    clock.advance(Duration::from_secs(30));
    chain.execute(&req("hello")).await.unwrap();
    assert_eq!(cache.stats().inserts, 2);
    assert_eq!(cache.get(&hello).as_deref(), Some("second"), "rewritten");
}
