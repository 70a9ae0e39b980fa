//! The response cache in Redis, shared by every gateway instance: live answers are written
//! with a TTL; the cache tier reads them (before the in-process cache, which keeps seeded
//! answers and serves when Redis is away). Every call is bounded by a short timeout, so a
//! dead Redis costs a fallback answer a few milliseconds, never a failure.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use resilience_core::fallback::{BoxFuture, CacheKey, FallbackProvider, ProviderError};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::pool::{Answer, GatewayRequest};

/// One Redis call's bound.
const OP_TIMEOUT: Duration = Duration::from_millis(50);
/// Connecting's bound (a connection is made lazily and dropped after a failure).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// Reads and writes cached answers in Redis under `cache:llm:<model|*>:<normalised prompt>`.
pub struct RedisCache {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    ttl: Duration,
}

impl RedisCache {
    /// A cache at `url` keeping answers for `ttl`; connects on first use.
    pub fn new(url: &str, ttl: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: Mutex::new(None),
            ttl,
        })
    }

    /// The Redis key of `key`.
    pub fn redis_key(key: &CacheKey) -> String {
        format!("cache:llm:{}:{}", key.model().unwrap_or("*"), key.prompt())
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            let connect = self.client.get_multiplexed_async_connection();
            *slot = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .ok()?
                .ok();
        }
        slot.clone()
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }

    /// Stores a live answer; failures are logged at debug and ignored.
    pub async fn store(&self, key: &CacheKey, answer: &Answer) {
        let Some(mut con) = self.connection().await else {
            return;
        };
        let value = json!({
            "response": answer.response,
            "model_used": answer.model_used,
            "tokens_used": answer.tokens_used,
        })
        .to_string();
        let seconds = self.ttl.as_secs().max(1);
        let set = con.set_ex::<_, _, ()>(Self::redis_key(key), value, seconds);
        match tokio::time::timeout(OP_TIMEOUT * 4, set).await {
            Ok(Ok(())) => {}
            outcome => {
                tracing::debug!(?outcome, "could not store the answer in the Redis cache");
                self.forget_connection().await;
            }
        }
    }

    async fn lookup(&self, key: &CacheKey) -> Result<Answer, ProviderError> {
        let Some(mut con) = self.connection().await else {
            return Err(ProviderError::Upstream(
                "redis cache unreachable".to_owned(),
            ));
        };
        let get = con.get::<_, Option<String>>(Self::redis_key(key));
        let text = match tokio::time::timeout(OP_TIMEOUT, get).await {
            Ok(Ok(Some(text))) => text,
            Ok(Ok(None)) => return Err(ProviderError::Miss),
            outcome => {
                self.forget_connection().await;
                return Err(ProviderError::Upstream(format!("redis cache: {outcome:?}")));
            }
        };
        let value: Value = serde_json::from_str(&text).map_err(|_| ProviderError::Miss)?;
        Ok(Answer {
            response: value["response"]
                .as_str()
                .ok_or(ProviderError::Miss)?
                .to_owned(),
            model_used: value["model_used"].as_str().unwrap_or("cache").to_owned(),
            tokens_used: value["tokens_used"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            served_by: "fallback_manager".to_owned(),
        })
    }
}

/// The cache key of a request: its model and normalised prompt; `None` for a blank prompt.
pub fn cache_key(req: &GatewayRequest) -> Option<CacheKey> {
    let key = CacheKey::new(req.generate.model.as_deref(), &req.generate.prompt);
    (!key.is_blank()).then_some(key)
}

impl FallbackProvider<GatewayRequest, Answer> for RedisCache {
    fn name(&self) -> &str {
        "redis_cache"
    }

    fn call<'a>(&'a self, req: &'a GatewayRequest) -> BoxFuture<'a, Result<Answer, ProviderError>> {
        Box::pin(async move {
            let key = cache_key(req).ok_or(ProviderError::Miss)?;
            match self.lookup(&key).await {
                Err(ProviderError::Miss) => match key.without_model() {
                    Some(any) => self.lookup(&any).await,
                    None => Err(ProviderError::Miss),
                },
                other => other,
            }
        })
    }
}
