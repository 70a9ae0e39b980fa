//! The response cache in Redis, shared by every gateway instance: live answers are written
//! with a TTL (as a [`StoredAnswer`]) under a key of bounded length, and only when they are
//! at most `max_entry_bytes` (reads are cut there too, so another writer's huge value costs
//! a miss, not memory); the cache tier reads them after the in-process cache
//! (which holds this gateway's answers and the seeded ones). Every call is bounded by a short timeout; after a
//! failure Redis is skipped for a moment, and a connect in progress is never waited for,
//! so a dead or hung Redis costs a fallback answer nothing, never a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use resilience_core::fallback::{BoxFuture, CacheKey, FallbackProvider, ProviderError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore};

use super::cache_key;
use crate::answer::{Answer, WholeAnswer};
use crate::pool::GatewayRequest;

/// One Redis call's bound.
const OP_TIMEOUT: Duration = Duration::from_millis(50);
/// Connecting's bound (a connection is made lazily and dropped after a failure).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// After a failure, Redis is not asked again for this long.
const BACK_OFF: Duration = Duration::from_secs(2);
/// Stores in flight at most; more are dropped (a cache may forget).
const STORES_IN_FLIGHT: usize = 32;

/// An answer as it is kept in Redis. Read leniently (other writers, other versions): a
/// `model_used` that is no string reads as `cache`, a `tokens_used` that is no count as 0.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAnswer {
    response: String,
    #[serde(default)]
    model_used: Option<serde_json::Value>,
    #[serde(default)]
    tokens_used: Option<serde_json::Value>,
}

impl StoredAnswer {
    fn new(answer: &WholeAnswer) -> Self {
        Self {
            response: answer.response.clone(),
            model_used: Some(answer.model_used.clone().into()),
            tokens_used: Some(answer.tokens_used.into()),
        }
    }

    fn into_answer(self) -> WholeAnswer {
        let model = self
            .model_used
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .unwrap_or("cache")
            .to_owned();
        let tokens = self
            .tokens_used
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        WholeAnswer::text(self.response, model, tokens, "fallback_manager")
    }
}

/// Model names up to this many bytes, of the characters a valid model name has, appear in
/// Redis keys as they are; longer or other ones as their digest.
const KEY_MODEL_BYTES: usize = 64;

/// Reads and writes cached answers in Redis under
/// `cache:llm:<model|sha256:<digest of the model>|*>:<digest of the normalised prompt>`.
pub struct RedisCache {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    ttl: Duration,
    /// The largest answer stored or read, as JSON bytes.
    max_entry_bytes: usize,
    /// Milliseconds after `origin` before which Redis is skipped.
    skip_until_ms: AtomicU64,
    origin: Instant,
    stores: Arc<Semaphore>,
}

impl RedisCache {
    /// A cache at `url` keeping answers of at most `max_entry_bytes` for `ttl`; connects on
    /// first use.
    pub fn new(url: &str, ttl: Duration, max_entry_bytes: usize) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: Mutex::new(None),
            ttl,
            max_entry_bytes,
            skip_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
            stores: Arc::new(Semaphore::new(STORES_IN_FLIGHT)),
        })
    }

    /// The Redis key of `key`: at most 146 bytes whatever the key holds. A short model
    /// name of model-name characters stays readable; the prompt is always a digest.
    pub fn redis_key(key: &CacheKey) -> String {
        let model = match key.model() {
            None => "*".to_owned(),
            Some(model)
                if model.len() <= KEY_MODEL_BYTES
                    && model.chars().all(llm_api::limits::is_model_char) =>
            {
                model.to_owned()
            }
            Some(model) => format!("sha256:{}", hex_digest(model)),
        };
        format!("cache:llm:{model}:{}", hex_digest(key.prompt()))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A connection, or `None` at once while backing off or while another task connects.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        if self.now_ms() < self.skip_until_ms.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.connection.try_lock().ok()?;
        if slot.is_none() {
            let connect = self.client.get_multiplexed_async_connection();
            match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(Ok(connection)) => *slot = Some(connection),
                _ => {
                    drop(slot);
                    self.back_off();
                    return None;
                }
            }
        }
        slot.clone()
    }

    /// Forgets the connection and skips Redis for [`BACK_OFF`].
    fn back_off(&self) {
        let pause = u64::try_from(BACK_OFF.as_millis()).unwrap_or(u64::MAX);
        self.skip_until_ms
            .store(self.now_ms().saturating_add(pause), Ordering::Release);
        if let Ok(mut slot) = self.connection.try_lock() {
            *slot = None;
        }
    }

    /// Stores a live answer in the background, unless too many stores are in flight.
    pub fn store_in_background(self: &Arc<Self>, key: CacheKey, answer: WholeAnswer) {
        let Ok(permit) = Arc::clone(&self.stores).try_acquire_owned() else {
            return;
        };
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            cache.store(&key, &answer).await;
            drop(permit);
        });
    }

    /// Stores a live answer; failures are logged at debug and ignored.
    pub async fn store(&self, key: &CacheKey, answer: &WholeAnswer) {
        let Some(mut con) = self.connection().await else {
            return;
        };
        let Ok(value) = serde_json::to_string(&StoredAnswer::new(answer)) else {
            return;
        };
        if value.len() > self.max_entry_bytes {
            return;
        }
        let seconds = self.ttl.as_secs().max(1);
        let set = con.set_ex::<_, _, ()>(Self::redis_key(key), value, seconds);
        match tokio::time::timeout(OP_TIMEOUT * 4, set).await {
            Ok(Ok(())) => {}
            outcome => {
                tracing::debug!(?outcome, "could not store the answer in the Redis cache");
                self.back_off();
            }
        }
    }

    async fn lookup(&self, key: &CacheKey) -> Result<WholeAnswer, ProviderError> {
        let Some(mut con) = self.connection().await else {
            return Err(ProviderError::Unavailable(
                "redis cache unavailable".to_owned(),
            ));
        };
        // At most one byte more than an entry may have: a longer value is not ours to read.
        let end = isize::try_from(self.max_entry_bytes).unwrap_or(isize::MAX);
        let get = con.getrange::<_, Option<Vec<u8>>>(Self::redis_key(key), 0, end);
        let text = match tokio::time::timeout(OP_TIMEOUT, get).await {
            Ok(Ok(Some(text))) if !text.is_empty() && text.len() <= self.max_entry_bytes => text,
            Ok(Ok(_)) => return Err(ProviderError::Miss),
            outcome => {
                self.back_off();
                return Err(ProviderError::Unavailable(format!(
                    "redis cache: {outcome:?}"
                )));
            }
        };
        let stored: StoredAnswer =
            serde_json::from_slice(&text).map_err(|_| ProviderError::Miss)?;
        Ok(stored.into_answer())
    }
}

impl FallbackProvider<GatewayRequest, Answer> for RedisCache {
    fn name(&self) -> &str {
        "redis_cache"
    }

    fn call<'a>(&'a self, req: &'a GatewayRequest) -> BoxFuture<'a, Result<Answer, ProviderError>> {
        Box::pin(async move {
            let key = cache_key(req).ok_or(ProviderError::Miss)?;
            let found = match self.lookup(&key).await {
                Err(ProviderError::Miss) => match key.without_model() {
                    Some(any) => self.lookup(&any).await,
                    None => Err(ProviderError::Miss),
                },
                other => other,
            };
            found.map(Answer::Whole)
        })
    }
}

/// The SHA-256 digest of `text`, in lowercase hex.
fn hex_digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_above_the_entry_bound_are_neither_stored_nor_read() {
        let server = test_support::RedisServer::start().await;
        let cache = RedisCache::new(&server.url(), Duration::from_secs(60), 200).unwrap();
        let (small_key, big_key) = (CacheKey::any_model("small"), CacheKey::any_model("big"));
        let small = WholeAnswer::text("s".repeat(50), "m", 1, "llm-a");
        cache.store(&small_key, &small).await;
        cache
            .store(
                &big_key,
                &WholeAnswer::text("b".repeat(200), "m", 1, "llm-a"),
            )
            .await;
        assert_eq!(
            cache.lookup(&small_key).await.unwrap().response,
            small.response
        );
        assert!(matches!(
            cache.lookup(&big_key).await,
            Err(ProviderError::Miss)
        ));

        let client = redis::Client::open(server.url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let stored: bool = con.exists(RedisCache::redis_key(&big_key)).await.unwrap();
        assert!(!stored, "the oversized answer was not written");
        let ttl: i64 = con.ttl(RedisCache::redis_key(&small_key)).await.unwrap();
        assert!((1..=60).contains(&ttl), "every answer has the TTL: {ttl}");

        // Another writer's oversized value is a miss, read no further than the bound.
        let foreign = format!(r#"{{"response":"{}"}}"#, "f".repeat(10_000));
        let () = con
            .set(RedisCache::redis_key(&big_key), foreign)
            .await
            .unwrap();
        assert!(matches!(
            cache.lookup(&big_key).await,
            Err(ProviderError::Miss)
        ));
        assert!(
            cache.lookup(&small_key).await.is_ok(),
            "and Redis is not skipped"
        );
    }

    #[test]
    fn redis_keys_are_bounded_whatever_the_model_and_prompt() {
        let digest = "[0-9a-f]{64}";
        let cases = [
            (
                CacheKey::new(Some("llama3.1:8b"), "What is AI?"),
                "llama3.1:8b",
            ),
            (CacheKey::any_model("What is AI?"), "*"),
            (CacheKey::new(Some(&"m".repeat(900 * 1024)), "p"), "sha256:"),
            (CacheKey::new(Some("a b;c"), "p"), "sha256:"),
            (CacheKey::new(Some(&"m".repeat(65)), "p"), "sha256:"),
            (CacheKey::new(Some(&"m".repeat(64)), "p"), &"m".repeat(64)),
            (
                CacheKey::new(Some("m"), &"long prompt ".repeat(100_000)),
                "m",
            ),
        ];
        for (key, model) in cases {
            let redis_key = RedisCache::redis_key(&key);
            assert!(redis_key.len() <= 146, "{}", redis_key.len());
            assert!(
                redis_key.starts_with(&format!("cache:llm:{model}")),
                "{redis_key}"
            );
            let prompt = redis_key.rsplit(':').next().unwrap_or_default();
            assert_eq!(prompt.len(), 64, "{digest}: {redis_key}");
            assert!(prompt.chars().all(|c| c.is_ascii_hexdigit()));
        }
        let a = RedisCache::redis_key(&CacheKey::new(Some("m"), "What is AI?"));
        assert_eq!(
            a,
            RedisCache::redis_key(&CacheKey::new(Some("M"), " what is ai "))
        );
        assert_ne!(
            a,
            RedisCache::redis_key(&CacheKey::new(Some("m"), "What is ML?"))
        );
        assert_ne!(
            a,
            RedisCache::redis_key(&CacheKey::new(Some("n"), "What is AI?"))
        );
    }

    fn read(text: &str) -> Option<WholeAnswer> {
        serde_json::from_str::<StoredAnswer>(text)
            .ok()
            .map(StoredAnswer::into_answer)
    }

    #[test]
    fn stored_answers_round_trip_and_odd_ones_read_leniently() {
        let answer = WholeAnswer::text("hi there", "m-1", 2, "llm-a");
        let text = serde_json::to_string(&StoredAnswer::new(&answer)).unwrap();
        assert_eq!(
            text,
            r#"{"response":"hi there","model_used":"m-1","tokens_used":2}"#
        );
        let back = read(&text).unwrap();
        assert_eq!(
            (
                back.response.as_str(),
                back.model_used.as_str(),
                back.tokens_used
            ),
            ("hi there", "m-1", 2)
        );
        assert_eq!(back.served_by, "fallback_manager");
        let odd = read(r#"{"response":"x","model_used":7,"tokens_used":-1.5}"#).unwrap();
        assert_eq!((odd.model_used.as_str(), odd.tokens_used), ("cache", 0));
        let bare = read(r#"{"response":"x"}"#).unwrap();
        assert_eq!((bare.model_used.as_str(), bare.tokens_used), ("cache", 0));
        assert!(
            read(r#"{"model_used":"m"}"#).is_none(),
            "no response: a miss"
        );
    }
}
