//! The tiered fallback chain, with response-cache and template providers.
//!
//! A [`FallbackChain`] holds [`Tier`]s in order — by design primary, secondary, cache,
//! template ([`TierKind`]) — each with one or more [`FallbackProvider`]s and a per-provider
//! timeout. [`FallbackChain::execute`] returns the first answer as [`Served`], which says
//! which tier and provider answered and what failed before (the gateway derives
//! `fallback_used`, `fallback_type` and `fallback_reason` from it), or a [`FallbackError`]:
//! [`FallbackError::Rejected`] when a provider found the request invalid (later tiers are
//! not tried) or [`FallbackError::AllTiersFailed`] with every cause. The chain's rules are
//! written out on [`FallbackChain`]; its counters come out as
//! [`FallbackStats`], keyed by tier name, for `/metrics`.
//!
//! Files: `tier` (kinds, the provider trait, tiers), `chain` (execution), `store` (where
//! the chain keeps live answers), `error`
//! (classified failures), `stats` (counters), `key` (prompt normalisation), `cache` (the
//! TTL- and size-bounded [`ResponseCache`]), `seed` (the seed file), `cache_provider` and
//! `template` (the two built-in providers).
//!
//! # The seed file
//!
//! `config/fallback_responses.json` holds answers to common prompts. They are loaded into the
//! cache with [`ResponseCache::load_seed_file`], never expire and are never evicted:
//!
//! ```json
//! {
//!   "description": "free text for whoever edits the file (optional)",
//!   "entries": [
//!     {
//!       "prompts": ["What is AI?", "What is artificial intelligence?"],
//!       "response": "Artificial intelligence (AI) is …",
//!       "model": null
//!     }
//!   ]
//! }
//! ```
//!
//! Each prompt variant is matched after [`normalise_prompt`] (case, whitespace and
//! punctuation folded). `model` is optional; absent or `null` means the answer serves any
//! model. Unknown fields, entries without prompts, blank answers and prompts that repeat
//! once normalised are errors, all reported together as [`crate::Error::InvalidConfig`]
//! naming the file.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use resilience_core::SystemClock;
//! use resilience_core::fallback::{
//!     CacheKey, CacheProvider, CacheStore, FallbackChain, ResponseCache, TemplateProvider, Tier,
//!     TierKind, degraded_text,
//! };
//!
//! let cache = Arc::new(ResponseCache::<String>::with_defaults(SystemClock::shared()));
//! let key = |prompt: &String| Some(CacheKey::any_model(prompt));
//! let chain = FallbackChain::new([
//!     Tier::new(TierKind::Cache).with_provider(CacheProvider::new("memory", cache.clone(), key)),
//!     Tier::new(TierKind::Template)
//!         .with_provider(TemplateProvider::new("degraded", |p: &String| degraded_text(p))),
//! ])?
//! .with_store(Arc::new(CacheStore::new(cache, key)));
//! # Ok::<(), resilience_core::Error>(())
//! ```

mod cache;
mod cache_provider;
mod chain;
mod error;
mod key;
mod seed;
mod stats;
mod store;
mod template;
mod tier;

#[cfg(test)]
mod tests;

pub use cache::{
    CacheStats, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, ENTRY_OVERHEAD_BYTES, ResponseCache,
    Weigher,
};
pub use cache_provider::CacheProvider;
pub use chain::{FallbackChain, Served};
pub use error::{AllTiersFailed, FallbackError, FallbackReason, ProviderError, TierFailure};
pub use key::{CacheKey, CacheKeyFn, normalise_prompt};
pub use seed::{SeedEntry, SeedFile};
pub use stats::{FallbackStats, LatencyStats, ProviderStats, TierStats};
pub use store::{AnswerStore, CacheStore};
pub use template::{DEGRADED_QUOTE_CHARS, TemplateProvider, degraded_text};
pub use tier::{
    BoxFuture, DEFAULT_LIVE_TIMEOUT, DEFAULT_LOCAL_TIMEOUT, FallbackProvider, Tier, TierKind,
};
