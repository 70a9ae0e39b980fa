//! Tiers and the providers inside them.
//!
//! A [`Tier`] is one rung of the fallback ladder: a [`TierKind`], an ordered list of
//! [`FallbackProvider`]s, a timeout that bounds each provider call, and a switch that an
//! operator can flip at run time. Providers are trait objects so that the gateway's pool
//! client, the response cache and the template sit side by side in one chain.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::error::ProviderError;
/// The registry's boxed, sendable future, reused as the return type of
/// [`FallbackProvider::call`].
pub use crate::registry::BoxFuture;

/// Default time a primary or secondary provider may take before it counts as timed out:
/// 30 s, the gateway's default `REQUEST_TIMEOUT`.
pub const DEFAULT_LIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a cache or template provider may take: 1 s, since both answer from memory.
pub const DEFAULT_LOCAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The rungs of the fallback ladder, in the design's order.
///
/// Serialised in lowercase (`"primary"`, `"secondary"`, `"cache"`, `"template"`), the form
/// `fallback_type` takes in the gateway's JSON.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TierKind {
    /// The production upstream pool.
    Primary,
    /// Backup upstreams (other instances or models).
    Secondary,
    /// Earlier successful answers and seeded common answers.
    Cache,
    /// A structured degraded answer built from the request alone.
    Template,
}

impl TierKind {
    /// Every kind, in the design's order.
    pub const ALL: [Self; 4] = [Self::Primary, Self::Secondary, Self::Cache, Self::Template];

    /// The lowercase name used in JSON, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
            Self::Cache => "cache",
            Self::Template => "template",
        }
    }

    /// Whether an answer from this tier is a fallback; false only for [`TierKind::Primary`].
    pub fn is_fallback(self) -> bool {
        !matches!(self, Self::Primary)
    }

    /// Whether this tier calls live upstreams, whose answers are worth caching.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Primary | Self::Secondary)
    }

    /// The timeout a new [`Tier`] of this kind starts with: [`DEFAULT_LIVE_TIMEOUT`] for live
    /// tiers, [`DEFAULT_LOCAL_TIMEOUT`] for cache and template.
    pub fn default_timeout(self) -> Duration {
        if self.is_live() {
            DEFAULT_LIVE_TIMEOUT
        } else {
            DEFAULT_LOCAL_TIMEOUT
        }
    }
}

impl fmt::Display for TierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that may answer a request: an upstream pool, the response cache, a template.
///
/// Called by [`FallbackChain::execute`](super::FallbackChain::execute) under the tier's
/// timeout; a provider that overruns it is abandoned (its future dropped) and recorded as
/// [`ProviderError::Timeout`]. Return [`ProviderError::Client`] only when the request itself
/// is invalid: that stops the chain at once.
pub trait FallbackProvider<Req, Resp>: Send + Sync {
    /// A short, stable name for stats and logs (for example `"pool"` or `"memory"`); unique
    /// within its tier.
    fn name(&self) -> &str;

    /// Tries to answer `req`; the future may borrow both the provider and the request.
    fn call<'a>(&'a self, req: &'a Req) -> BoxFuture<'a, Result<Resp, ProviderError>>;
}

impl<Req, Resp, P> FallbackProvider<Req, Resp> for Arc<P>
where
    P: FallbackProvider<Req, Resp> + ?Sized,
{
    fn name(&self) -> &str {
        (**self).name()
    }

    fn call<'a>(&'a self, req: &'a Req) -> BoxFuture<'a, Result<Resp, ProviderError>> {
        (**self).call(req)
    }
}

/// One rung of a [`FallbackChain`](super::FallbackChain): its kind, its providers in the
/// order they are tried, its per-provider timeout and whether it is enabled.
///
/// Built with [`Tier::new`] and the `with_*` methods; enabled by default, with the kind's
/// [`default_timeout`](TierKind::default_timeout). Only the enabled switch changes after
/// the chain is built.
pub struct Tier<Req, Resp> {
    kind: TierKind,
    timeout: Duration,
    enabled: AtomicBool,
    providers: Vec<Arc<dyn FallbackProvider<Req, Resp>>>,
}

impl<Req, Resp> Tier<Req, Resp> {
    /// An enabled tier of `kind` with no providers yet and the kind's default timeout.
    pub fn new(kind: TierKind) -> Self {
        Self {
            kind,
            timeout: kind.default_timeout(),
            enabled: AtomicBool::new(true),
            providers: Vec::new(),
        }
    }

    /// Appends a provider; providers are tried in the order they were added.
    pub fn with_provider(mut self, provider: impl FallbackProvider<Req, Resp> + 'static) -> Self {
        self.providers.push(Arc::new(provider));
        self
    }

    /// Sets how long each provider of this tier may take before it counts as timed out.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets whether the tier starts enabled (default: enabled).
    pub fn with_enabled(self, enabled: bool) -> Self {
        self.set_enabled(enabled);
        self
    }

    /// The tier's kind.
    pub fn kind(&self) -> TierKind {
        self.kind
    }

    /// The per-provider timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the chain currently tries this tier.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Enables or disables the tier; requests that reach the tier afterwards see the change.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// The names of the providers, in the order they are tried.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.name())
    }

    pub(super) fn providers(&self) -> &[Arc<dyn FallbackProvider<Req, Resp>>] {
        &self.providers
    }
}

impl<Req, Resp> fmt::Debug for Tier<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("kind", &self.kind)
            .field("timeout", &self.timeout)
            .field("enabled", &self.is_enabled())
            .field("providers", &self.provider_names().collect::<Vec<_>>())
            .finish()
    }
}
