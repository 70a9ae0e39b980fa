//! Every read and write of the response cache, without Redis (the e2e suite covers Redis).

use std::time::Duration;

use llm_api::generate::GenerateRequest;
use llm_api::openai::ChatCompletionRequest;
use resilience_core::SystemClock;
use resilience_core::fallback::{FallbackChain, FallbackError, TierKind};

use super::*;
use crate::upstream::Payload;

fn settings() -> CacheSettings {
    CacheSettings {
        ttl: Duration::from_secs(60),
        capacity: 10,
        max_bytes: 1 << 20,
        max_entry_bytes: 4096,
        seed_file: None,
    }
}

fn cache() -> AnswerCache {
    AnswerCache::new(&settings(), None, SystemClock::shared()).unwrap()
}

fn generate(prompt: &str) -> GatewayRequest {
    GatewayRequest::new(
        Payload::Generate(GenerateRequest::new(prompt)),
        "r-1",
        Duration::from_secs(5),
    )
}

fn chat_stream(prompt: &str) -> GatewayRequest {
    let body = serde_json::json!({
        "model": "m",
        "stream": true,
        "messages": [{"role": "user", "content": prompt}],
    });
    let chat: ChatCompletionRequest = serde_json::from_value(body).unwrap();
    GatewayRequest::new(Payload::Chat(chat), "r-2", Duration::from_secs(5))
}

/// What the cache tier answers to `req`.
async fn lookup(cache: &AnswerCache, req: &GatewayRequest) -> Option<WholeAnswer> {
    let chain = FallbackChain::new([cache.tier()]).unwrap();
    match chain.execute(req).await {
        Ok(served) => {
            assert_eq!(served.tier, TierKind::Cache);
            match served.response {
                Answer::Whole(whole) => Some(whole),
                Answer::Stream(_) => panic!("the cache answers whole"),
            }
        }
        Err(FallbackError::AllTiersFailed(_)) => None,
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn the_seeded_answers_are_served_from_the_start() {
    let cache = cache();
    let answer = lookup(&cache, &generate("What is AI?")).await.unwrap();
    assert_eq!(answer.served_by, "fallback_manager");
    assert!(!answer.response.is_empty());
    assert!(
        lookup(&cache, &generate("never asked before"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_whole_live_answer_is_kept_and_served_later() {
    let cache = cache();
    let req = generate("Tell me about breakers");
    let answer = WholeAnswer::text("They open.", "m-1", 2, "llm-a");
    AnswerStore::remember(&cache, &req, &Answer::Whole(answer.clone()));
    assert_eq!(lookup(&cache, &req).await, Some(answer));
    assert_eq!(AnswerStore::stats(&cache).map(|s| s.inserts), Some(1));
}

#[tokio::test]
async fn a_stream_request_is_kept_only_once_its_stream_completed() {
    let cache = cache();
    let req = chat_stream("Stream me a story");
    let answer = WholeAnswer::text("Once upon a time", "m", 4, "llm-a");
    AnswerStore::remember(&cache, &req, &Answer::Whole(answer.clone()));
    assert!(
        lookup(&cache, &req).await.is_none(),
        "not at the chain's answer"
    );
    cache.remember_stream(cache_key(&req).unwrap(), answer.clone());
    assert_eq!(lookup(&cache, &req).await, Some(answer));
}

#[test]
fn blank_and_very_long_prompts_have_no_key() {
    assert!(cache_key(&generate("   ")).is_none());
    assert!(cache_key(&generate(&"x".repeat(MAX_CACHED_PROMPT + 1))).is_none());
    assert!(cache_key(&generate("short")).is_some());
    assert!(store_key(&chat_stream("short")).is_none());
}

#[tokio::test]
async fn the_byte_bound_holds_and_the_oldest_answers_go_first() {
    let settings = CacheSettings {
        capacity: 1_000,
        max_bytes: 8 * 1024,
        ..settings()
    };
    let cache = AnswerCache::new(&settings, None, SystemClock::shared()).unwrap();
    let answer = |i: usize| WholeAnswer::text("a".repeat(1000 + i), "m-1", 200, "llm-a");
    for i in 0..50 {
        let req = generate(&format!("question number {i}"));
        AnswerStore::remember(&cache, &req, &Answer::Whole(answer(i)));
        let stats = cache.stats();
        assert!(stats.bytes <= 8 * 1024, "{stats:?}");
    }
    let stats = cache.stats();
    assert!(stats.entries < 8 && stats.evictions > 40, "{stats:?}");
    assert!(
        lookup(&cache, &generate("question number 0"))
            .await
            .is_none()
    );
    assert_eq!(
        lookup(&cache, &generate("question number 49")).await,
        Some(answer(49))
    );
}

#[tokio::test]
async fn an_answer_above_the_entry_bound_is_not_cached() {
    let cache = cache();
    let req = generate("Tell me everything");
    let huge = WholeAnswer::text("w".repeat(5000), "m-1", 1000, "llm-a");
    AnswerStore::remember(&cache, &req, &Answer::Whole(huge.clone()));
    assert!(lookup(&cache, &req).await.is_none());
    cache.remember_stream(cache_key(&req).unwrap(), huge);
    assert!(lookup(&cache, &req).await.is_none());
    assert_eq!(cache.stats().oversized, 2);
    assert!(answer_bytes(&WholeAnswer::text("x".repeat(5000), "m", 1, "s")) > 5000);
}

#[test]
fn a_very_long_model_name_has_no_key() {
    let named = |model: String| {
        let generate = GenerateRequest {
            model: Some(model),
            ..GenerateRequest::new("hello")
        };
        GatewayRequest::new(Payload::Generate(generate), "r-3", Duration::from_secs(5))
    };
    assert!(cache_key(&named("m".repeat(MAX_CACHED_MODEL))).is_some());
    assert!(cache_key(&named("m".repeat(MAX_CACHED_MODEL + 1))).is_none());
    assert!(cache_key(&named("m".repeat(900 * 1024))).is_none());
}
