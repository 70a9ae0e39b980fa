//! The cache tier's provider: answers from a [`ResponseCache`] or reports a miss.
//!
//! It never fails any other way and never waits, so it costs a hash lookup when the live
//! tiers are down.

use std::fmt;
use std::sync::Arc;

use super::cache::ResponseCache;
use super::error::ProviderError;
use super::key::{CacheKey, CacheKeyFn};
use super::tier::{BoxFuture, FallbackProvider};

/// A [`FallbackProvider`] that looks the request up in a shared [`ResponseCache`].
///
/// Answers with a clone of the cached response; fails with [`ProviderError::Miss`] when
/// nothing is cached or the key function returns `None` for the request.
pub struct CacheProvider<Req, Resp> {
    name: String,
    cache: Arc<ResponseCache<Resp>>,
    key: CacheKeyFn<Req>,
}

impl<Req, Resp> CacheProvider<Req, Resp> {
    /// A provider named `name` that looks requests up in `cache` under the key `key` gives.
    pub fn new(
        name: impl Into<String>,
        cache: Arc<ResponseCache<Resp>>,
        key: impl Fn(&Req) -> Option<CacheKey> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            cache,
            key: Arc::new(key),
        }
    }

    /// The cache this provider reads.
    pub fn cache(&self) -> &Arc<ResponseCache<Resp>> {
        &self.cache
    }
}

/// Answers with the cached response, or anything it converts into (a chain whose answers
/// may also be streams caches only whole ones).
impl<Req, Resp, Out> FallbackProvider<Req, Out> for CacheProvider<Req, Resp>
where
    Resp: Clone + Into<Out> + Send + 'static,
    Out: Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn call<'a>(&'a self, req: &'a Req) -> BoxFuture<'a, Result<Out, ProviderError>> {
        let found = (self.key)(req).and_then(|key| self.cache.get(&key));
        Box::pin(std::future::ready(
            found.map(Into::into).ok_or(ProviderError::Miss),
        ))
    }
}

impl<Req, Resp> fmt::Debug for CacheProvider<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheProvider")
            .field("name", &self.name)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
