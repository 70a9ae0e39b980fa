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
