//! The response cache, every read and every write of it: [`AnswerCache`] holds this
//! gateway's in-process cache (its own live answers and the seeded ones) and, when Redis is
//! configured, the cache shared with other gateways ([`RedisCache`]).
//!
//! - Writes: the fallback chain gives it every whole answer a live tier served
//!   ([`AnswerStore::remember`]; a stream request's answer is still coming then), and the
//!   stream relay gives it a stream's text once the stream completed
//!   ([`AnswerCache::remember_stream`]). Each write goes to the in-process cache and, in
//!   the background, to Redis — unless the in-process cache already holds an answer for
//!   the key stored less than half the TTL ago (`ResponseCache::holds_fresh`): a popular
//!   prompt is written once per half TTL, not once per request.
//! - Reads: the cache tier it builds ([`AnswerCache::tier`]) asks the in-process cache first
//!   (no network), then Redis.
//! - Keys: a request's model and normalised prompt ([`cache_key`]); blank and very long
//!   prompts, and very long model names, are neither cached nor looked up. In Redis the
//!   prompt is a SHA-256 digest ([`RedisCache::redis_key`]), so every key is short.
//! - Bounds: the in-process cache holds at most `capacity` learned answers and
//!   `max_bytes` of them (the least recently used go first); an answer above
//!   `max_entry_bytes` is cached neither in process nor in Redis, where every answer has the
//!   TTL and reads are cut at `max_entry_bytes` too.

mod redis;

pub use self::redis::RedisCache;

use std::sync::Arc;

use resilience_core::SharedClock;
use resilience_core::fallback::{
    AnswerStore, CacheKey, CacheProvider, CacheStats, CacheStore, ResponseCache, SeedFile, Tier,
    TierKind,
};

use crate::answer::{Answer, WholeAnswer};
use crate::config::CacheSettings;
use crate::pool::GatewayRequest;
use crate::telemetry::Traced;
use crate::upstream::count_words;

/// Prompts longer than this (in bytes, normalised) are neither cached nor looked up.
pub const MAX_CACHED_PROMPT: usize = 2048;

/// Model names longer than this (in bytes) are neither cached nor looked up: validation
/// refuses them earlier, but a key never depends on that.
pub const MAX_CACHED_MODEL: usize = 256;

/// The answers to common prompts every gateway starts with.
const SEED: &str = include_str!("../../../config/fallback_responses.json");

/// The response cache: in-process, and shared through Redis when configured.
pub struct AnswerCache {
    local: CacheStore<GatewayRequest, WholeAnswer>,
    redis: Option<Arc<RedisCache>>,
}

impl AnswerCache {
    /// The cache `settings` describe, seeded from its seed file (or the built-in one), and
    /// shared through Redis at `redis_url` when given.
    pub fn new(
        settings: &CacheSettings,
        redis_url: Option<&str>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let ttl = settings.ttl;
        let local = Arc::new(
            ResponseCache::new(clock, ttl, settings.capacity).with_byte_limit(
                settings.max_bytes,
                settings.max_entry_bytes,
                answer_bytes,
            ),
        );
        let seed = match &settings.seed_file {
            Some(path) => SeedFile::load(path)?,
            None => SeedFile::parse(SEED, "config/fallback_responses.json")?,
        };
        local.seed(&seed, |entry| {
            WholeAnswer::text(
                entry.response.clone(),
                entry.model.clone().unwrap_or_else(|| "cache".to_owned()),
                count_words(&entry.response),
                "fallback_manager",
            )
        });
        let redis = match redis_url {
            Some(url) => Some(Arc::new(RedisCache::new(
                url,
                ttl,
                settings.max_entry_bytes,
            )?)),
            None => None,
        };
        Ok(Self {
            local: CacheStore::new(local, store_key),
            redis,
        })
    }

    /// The cache tier: the in-process cache, then Redis.
    pub fn tier(&self) -> Tier<GatewayRequest, Answer> {
        let tier = Tier::new(TierKind::Cache).with_provider(Traced::new(
            TierKind::Cache,
            CacheProvider::new("response_cache", Arc::clone(self.local.cache()), cache_key),
        ));
        match &self.redis {
            Some(redis) => tier.with_provider(Traced::new(TierKind::Cache, Arc::clone(redis))),
            None => tier,
        }
    }

    /// Keeps the text of a stream that completed, under `key`.
    pub fn remember_stream(&self, key: CacheKey, answer: WholeAnswer) {
        self.store(key, &answer);
    }

    /// Stores `answer` under `key` in process and, in the background, in Redis, unless the
    /// in-process cache holds a fresh answer there ([`ResponseCache::holds_fresh`]).
    fn store(&self, key: CacheKey, answer: &WholeAnswer) {
        let local = self.local.cache();
        if local.holds_fresh(&key) {
            return;
        }
        if let Some(redis) = &self.redis {
            redis.store_in_background(key.clone(), answer.clone());
        }
        local.insert(key, answer.clone());
    }

    /// The in-process cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.local.cache().stats()
    }
}

impl AnswerStore<GatewayRequest, Answer> for AnswerCache {
    /// Stores the answer in process and in Redis, unless the in-process cache holds a
    /// fresh one under its key (then Redis got it too, when it was stored).
    fn remember(&self, req: &GatewayRequest, answer: &Answer) {
        let Answer::Whole(whole) = answer else {
            return; // kept by the relay once it completed
        };
        if let Some(key) = store_key(req) {
            self.store(key, whole);
        }
    }

    fn stats(&self) -> Option<CacheStats> {
        Some(AnswerCache::stats(self))
    }
}

/// The cache key of a request: its model and normalised prompt (a chat's messages); `None`
/// for a blank prompt, one longer than [`MAX_CACHED_PROMPT`] or a model name longer than
/// [`MAX_CACHED_MODEL`], so a key's text is bounded whatever the request.
pub fn cache_key(req: &GatewayRequest) -> Option<CacheKey> {
    let model = req.payload.model();
    if model.is_some_and(|m| m.len() > MAX_CACHED_MODEL) {
        return None;
    }
    CacheKey::within(model, &req.payload.prompt_text(), MAX_CACHED_PROMPT)
        .filter(|key| !key.is_blank())
}

/// The estimated heap bytes of a cached answer: its strings and, for a chat answer, the
/// upstream's completion as JSON (what the bytes of its strings and fields amount to).
pub fn answer_bytes(answer: &WholeAnswer) -> usize {
    let completion = answer.completion.as_deref().map_or(0, |completion| {
        let mut counter = ByteCounter(0);
        match serde_json::to_writer(&mut counter, completion) {
            Ok(()) => counter.0,
            // Cannot happen for a completion; weighed as too big to keep, never as free.
            Err(_) => usize::MAX,
        }
    });
    answer
        .response
        .len()
        .saturating_add(answer.model_used.len())
        .saturating_add(answer.served_by.len())
        .saturating_add(std::mem::size_of::<WholeAnswer>())
        .saturating_add(completion)
}

/// Counts what is written to it, keeping nothing.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The key a live answer is stored under: [`cache_key`], except for a stream, whose answer
/// is still coming when the chain returns (the relay stores it once it completed).
pub fn store_key(req: &GatewayRequest) -> Option<CacheKey> {
    if req.payload.is_stream() {
        None
    } else {
        cache_key(req)
    }
}

#[cfg(test)]
mod tests;
