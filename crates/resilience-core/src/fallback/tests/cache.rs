//! The response cache: TTL on a manual clock, the size bound, seeded entries, model lookup.

use std::sync::Arc;
use std::time::Duration;

use super::support::{Req, manual_cache, req, req_for};
use crate::clock::{ManualClock, SharedClock};
use crate::fallback::{
    CacheKey, CacheProvider, ENTRY_OVERHEAD_BYTES, FallbackProvider, ProviderError, ResponseCache,
};

const MINUTE: Duration = Duration::from_secs(60);

fn k(prompt: &str) -> CacheKey {
    CacheKey::any_model(prompt)
}

fn km(model: &str, prompt: &str) -> CacheKey {
    CacheKey::new(Some(model), prompt)
}

#[test]
fn get_misses_before_insert_and_hits_after() {
    let (_clock, cache) = manual_cache(MINUTE, 10);
    assert_eq!(cache.get(&k("hello")), None);

    cache.insert(k("Hello!"), "hi there".to_owned());

    assert_eq!(cache.get(&k("  HELLO ")).as_deref(), Some("hi there"));
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_ttl_too_long_to_represent_never_expires() {
    let (clock, cache) = manual_cache(Duration::MAX, 10);
    cache.insert(k("hello"), "hi".to_owned());
    clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    assert_eq!(cache.get(&k("hello")).as_deref(), Some("hi"));
    assert_eq!(cache.stats().expirations, 0);
}

#[test]
fn learned_entry_expires_when_its_ttl_has_passed() {
    let (clock, cache) = manual_cache(MINUTE, 10);
    cache.insert(k("hello"), "hi".to_owned());

    clock.advance(MINUTE - Duration::from_millis(1));
    assert_eq!(cache.get(&k("hello")).as_deref(), Some("hi"));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&k("hello")), None);

    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.expirations), (1, 1, 1));
    assert!(cache.is_empty(), "the expired entry is removed when found");
}

#[test]
fn reinserting_a_key_replaces_the_answer_and_restarts_its_ttl() {
    let (clock, cache) = manual_cache(MINUTE, 10);
    cache.insert(k("hello"), "old".to_owned());
    clock.advance(Duration::from_secs(50));
    cache.insert(k("hello"), "new".to_owned());
    clock.advance(Duration::from_secs(50));

    assert_eq!(cache.get(&k("hello")).as_deref(), Some("new"));
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.stats().inserts, 2);
}

#[test]
fn an_entry_is_fresh_for_half_its_ttl_then_due_for_a_rewrite() {
    let (clock, cache) = manual_cache(MINUTE, 10);
    assert!(!cache.holds_fresh(&k("hello")), "nothing stored yet");
    cache.insert(k("hello"), "hi".to_owned());
    assert!(cache.holds_fresh(&k("  HELLO ")));
    assert!(
        !cache.holds_fresh(&km("other-model", "hello")),
        "another key"
    );

    clock.advance(MINUTE / 2 - Duration::from_millis(1));
    assert!(cache.holds_fresh(&k("hello")), "29.999 s of 60 s: fresh");
    clock.advance(Duration::from_millis(1));
    assert!(
        !cache.holds_fresh(&k("hello")),
        "half the TTL gone: rewrite"
    );
    assert_eq!(
        cache.get(&k("hello")).as_deref(),
        Some("hi"),
        "still served"
    );

    let (clock, forever) = manual_cache(Duration::MAX, 10);
    forever.insert(k("hello"), "hi".to_owned());
    clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    assert!(
        forever.holds_fresh(&k("hello")),
        "an entry that never expires stays fresh"
    );
}

#[test]
fn size_bound_evicts_the_least_recently_used_entry() {
    let (_clock, cache) = manual_cache(MINUTE, 2);
    cache.insert(k("a"), "A".to_owned());
    cache.insert(k("b"), "B".to_owned());
    assert!(
        cache.get(&k("a")).is_some(),
        "touch a, so b is least recently used"
    );

    cache.insert(k("c"), "C".to_owned());

    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(&k("b")), None);
    assert_eq!(cache.get(&k("a")).as_deref(), Some("A"));
    assert_eq!(cache.get(&k("c")).as_deref(), Some("C"));
    assert_eq!(cache.stats().evictions, 1);
}

#[test]
fn size_bound_removes_expired_entries_before_fresh_ones() {
    let (clock, cache) = manual_cache(MINUTE, 3);
    cache.insert(k("old"), "O".to_owned());
    clock.advance(Duration::from_secs(30));
    cache.insert(k("b"), "B".to_owned());
    cache.insert(k("c"), "C".to_owned());
    assert!(
        cache.get(&k("old")).is_some(),
        "old is now the most recently used"
    );
    clock.advance(Duration::from_secs(31));

    cache.insert(k("d"), "D".to_owned());

    assert_eq!(cache.len(), 3);
    for (prompt, answer) in [("b", "B"), ("c", "C"), ("d", "D")] {
        assert_eq!(cache.get(&k(prompt)).as_deref(), Some(answer), "{prompt}");
    }
    let stats = cache.stats();
    assert_eq!((stats.expirations, stats.evictions), (1, 0));
}

#[test]
fn purge_expired_removes_only_expired_entries() {
    let (clock, cache) = manual_cache(MINUTE, 10);
    cache.insert(k("a"), "A".to_owned());
    clock.advance(Duration::from_secs(40));
    cache.insert(k("b"), "B".to_owned());
    clock.advance(Duration::from_secs(30));

    assert_eq!(cache.purge_expired(), 1);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(&k("b")).as_deref(), Some("B"));
}

#[test]
fn seeded_entries_survive_the_size_bound_and_never_expire() {
    let (clock, cache) = manual_cache(MINUTE, 1);
    cache.insert_seeded(k("What is AI?"), "seeded AI".to_owned());
    cache.insert_seeded(k("Hello"), "seeded hello".to_owned());
    for prompt in ["x", "y", "z"] {
        cache.insert(k(prompt), prompt.to_uppercase());
    }
    clock.advance(Duration::from_secs(365 * 24 * 3600));

    assert_eq!(cache.get(&k("what is ai")).as_deref(), Some("seeded AI"));
    assert_eq!(cache.get(&k("hello")).as_deref(), Some("seeded hello"));
    assert_eq!(cache.get(&k("z")), None, "learned entries did expire");
    let stats = cache.stats();
    assert_eq!((stats.seeded, stats.entries, stats.evictions), (2, 0, 2));
    assert_eq!(stats.seeded_hits, 2);
}

#[test]
fn learned_entry_shadows_a_seeded_one_until_it_expires() {
    let (clock, cache) = manual_cache(MINUTE, 10);
    cache.insert_seeded(k("hello"), "seeded".to_owned());
    cache.insert(k("hello"), "learned".to_owned());

    assert_eq!(cache.get(&k("hello")).as_deref(), Some("learned"));
    clock.advance(MINUTE);
    assert_eq!(cache.get(&k("hello")).as_deref(), Some("seeded"));
}

#[test]
fn model_specific_entry_is_preferred_over_a_model_agnostic_one() {
    let (_clock, cache) = manual_cache(MINUTE, 10);
    cache.insert_seeded(k("hello"), "any model".to_owned());
    cache.insert(km("gpt-x", "hello"), "gpt-x hello".to_owned());

    assert_eq!(
        cache.get(&km("GPT-X ", "Hello")).as_deref(),
        Some("gpt-x hello")
    );
    assert_eq!(
        cache.get(&km("other", "Hello")).as_deref(),
        Some("any model")
    );
    assert_eq!(cache.get(&k("hello")).as_deref(), Some("any model"));
}

#[test]
fn model_specific_entry_does_not_answer_another_model() {
    let (_clock, cache) = manual_cache(MINUTE, 10);
    cache.insert(km("gpt-x", "hello"), "gpt-x hello".to_owned());

    assert_eq!(cache.get(&km("other", "hello")), None);
    assert_eq!(
        cache.get(&k("hello")),
        None,
        "an agnostic lookup does not take a model's answer"
    );
}

#[test]
fn counters_track_hits_misses_inserts_and_evictions() {
    let (_clock, cache) = manual_cache(MINUTE, 1);
    cache.insert(k("a"), "A".to_owned());
    cache.get(&k("a"));
    cache.get(&k("missing"));
    cache.insert(k("b"), "B".to_owned());
    cache.get(&k("a"));

    let stats = cache.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.inserts,
            stats.evictions,
            stats.entries
        ),
        (1, 2, 2, 1, 1)
    );
    assert_eq!((stats.capacity, stats.ttl_ms), (1, 60_000));
}

#[test]
fn zero_capacity_stores_no_learned_entries_but_serves_seeded_ones() {
    let (_clock, cache) = manual_cache(MINUTE, 0);
    cache.insert(k("a"), "A".to_owned());
    cache.insert_seeded(k("b"), "B".to_owned());

    assert!(cache.is_empty());
    assert_eq!(cache.get(&k("a")), None);
    assert_eq!(cache.get(&k("b")).as_deref(), Some("B"));
}

#[test]
fn blank_prompts_are_never_stored_or_matched() {
    let (_clock, cache) = manual_cache(MINUTE, 10);
    cache.insert(k("?!"), "punctuation".to_owned());
    cache.insert_seeded(k("   "), "spaces".to_owned());

    assert!(cache.is_empty());
    assert_eq!(cache.stats().seeded, 0);
    assert_eq!(cache.get(&k("...")), None);
}

#[tokio::test]
async fn cache_provider_misses_then_hits() {
    let (_clock, cache) = manual_cache(MINUTE, 10);
    let provider = CacheProvider::new("memory", Arc::clone(&cache), super::support::key);
    let request = req_for("gpt-x", "What is AI?");

    assert_eq!(
        FallbackProvider::<Req, String>::call(&provider, &request).await,
        Err(ProviderError::Miss)
    );
    cache.insert(km("gpt-x", "what is ai"), "AI is…".to_owned());
    assert_eq!(
        FallbackProvider::<Req, String>::call(&provider, &request)
            .await
            .as_deref(),
        Ok("AI is…")
    );
    assert_eq!(FallbackProvider::<Req, String>::name(&provider), "memory");
    assert!(Arc::ptr_eq(provider.cache(), &cache));
}

#[tokio::test]
async fn cache_provider_misses_when_the_key_function_declines() {
    let (_clock, cache) = manual_cache(MINUTE, 10);
    cache.insert_seeded(k("hello"), "hi".to_owned());
    let provider = CacheProvider::new("memory", cache, |_: &Req| None);

    assert_eq!(
        FallbackProvider::<Req, String>::call(&provider, &req("hello")).await,
        Err(ProviderError::Miss)
    );
}

/// A cache of `capacity` entries, bounded to `max_bytes` with entries up to `max_entry`,
/// whose values weigh their length.
fn byte_cache(
    max_bytes: usize,
    max_entry: usize,
) -> (Arc<ManualClock>, Arc<ResponseCache<String>>) {
    let clock = ManualClock::new();
    let shared: SharedClock = clock.clone();
    let cache = ResponseCache::new(shared, MINUTE, 1_000).with_byte_limit(
        max_bytes,
        max_entry,
        String::len,
    );
    (clock, Arc::new(cache))
}

/// The weight of a one-letter prompt with a `len`-byte answer.
fn weight(len: usize) -> usize {
    ENTRY_OVERHEAD_BYTES + 1 + len
}

#[test]
fn byte_bound_holds_and_the_least_recently_used_go_first() {
    let (_clock, cache) = byte_cache(weight(100) * 3, usize::MAX);
    for prompt in ["a", "b", "c"] {
        cache.insert(k(prompt), "x".repeat(100));
    }
    assert_eq!(cache.stats().bytes, weight(100) * 3);
    assert!(cache.get(&k("a")).is_some(), "touch a: b is now the oldest");

    cache.insert(k("d"), "y".repeat(100));
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.bytes), (3, weight(100) * 3));
    assert_eq!(cache.get(&k("b")), None, "the least recently used went");
    assert!(cache.get(&k("a")).is_some() && cache.get(&k("d")).is_some());

    // One bigger answer makes room by evicting as many as it takes.
    cache.insert(k("e"), "z".repeat(250));
    let stats = cache.stats();
    assert!(stats.bytes <= stats.max_bytes, "{stats:?}");
    assert_eq!(stats.entries, 2, "c and a made room; d stays");
    assert_eq!(stats.evictions, 1 + 2);
    assert!(cache.get(&k("d")).is_some() && cache.get(&k("c")).is_none());
    for i in 0..1_000 {
        cache.insert(k(&format!("p{i}")), "w".repeat(i % 300));
        assert!(cache.stats().bytes <= weight(100) * 3);
    }
}

#[test]
fn an_answer_above_the_entry_bound_is_not_cached() {
    let (_clock, cache) = byte_cache(usize::MAX, weight(100));
    cache.insert(k("a"), "x".repeat(100));
    assert!(cache.get(&k("a")).is_some(), "exactly at the bound: kept");
    cache.insert(k("b"), "x".repeat(101));
    assert_eq!(cache.get(&k("b")), None);
    cache.insert(k("a"), "y".repeat(101));
    assert_eq!(
        cache.get(&k("a")).as_deref(),
        Some("x".repeat(100).as_str()),
        "a refused answer leaves the earlier one"
    );
    let stats = cache.stats();
    assert_eq!((stats.oversized, stats.entries), (2, 1));
    assert_eq!(stats.bytes, weight(100));

    let (_clock, small) = byte_cache(weight(10), usize::MAX);
    small.insert(k("a"), "x".repeat(11));
    assert!(small.is_empty(), "above the whole bound: not cached either");
}

#[test]
fn bytes_are_given_back_when_entries_expire_or_are_replaced() {
    let (clock, cache) = byte_cache(usize::MAX, usize::MAX);
    cache.insert(k("a"), "x".repeat(10));
    cache.insert(k("a"), "x".repeat(20));
    assert_eq!(cache.stats().bytes, weight(20));
    cache.insert(km("m", "b"), "x".repeat(5));
    assert_eq!(
        cache.stats().bytes,
        weight(20) + weight(5) + 1,
        "the model counts"
    );
    clock.advance(MINUTE + Duration::from_secs(1));
    assert_eq!(cache.purge_expired(), 2);
    assert_eq!(cache.stats().bytes, 0);
}
