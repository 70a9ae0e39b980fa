//! Where a chain keeps its live tiers' answers, so that a later request's cache tier can
//! serve them: the [`AnswerStore`] trait, and [`CacheStore`], a [`ResponseCache`] under a key
//! function.

use std::fmt;
use std::sync::Arc;

use super::cache::{CacheStats, ResponseCache};
use super::key::{CacheKey, CacheKeyFn};

/// Keeps the answers a chain's live tiers (primary, secondary) gave.
pub trait AnswerStore<Req, Resp>: Send + Sync {
    /// Keeps `response`, a live tier's answer to `req`, or declines to.
    fn remember(&self, req: &Req, response: &Resp);

    /// The store's counters, reported with the chain's stats.
    fn stats(&self) -> Option<CacheStats>;
}

/// A [`ResponseCache`] that keeps each answer under the key its function gives the request
/// (nothing when it gives `None`).
pub struct CacheStore<Req, Resp> {
    cache: Arc<ResponseCache<Resp>>,
    key: CacheKeyFn<Req>,
}

impl<Req, Resp> CacheStore<Req, Resp> {
    /// A store writing into `cache` under the key `key` gives the request.
    pub fn new(
        cache: Arc<ResponseCache<Resp>>,
        key: impl Fn(&Req) -> Option<CacheKey> + Send + Sync + 'static,
    ) -> Self {
        Self {
            cache,
            key: Arc::new(key),
        }
    }

    /// The cache it writes.
    pub fn cache(&self) -> &Arc<ResponseCache<Resp>> {
        &self.cache
    }
}

impl<Req, Resp> AnswerStore<Req, Resp> for CacheStore<Req, Resp>
where
    Resp: Clone + Send + Sync,
{
    /// Stores the answer unless the cache holds a fresh one under its key
    /// ([`ResponseCache::holds_fresh`]).
    fn remember(&self, req: &Req, response: &Resp) {
        if let Some(key) = (self.key)(req)
            && !self.cache.holds_fresh(&key)
        {
            self.cache.insert(key, response.clone());
        }
    }

    fn stats(&self) -> Option<CacheStats> {
        Some(self.cache.stats())
    }
}

impl<Req, Resp> fmt::Debug for CacheStore<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheStore")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
