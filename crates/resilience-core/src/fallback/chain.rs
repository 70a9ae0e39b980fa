//! The fallback chain: tiers tried in order, providers tried in order, until one answers.
//!
//! The rules live on [`FallbackChain`]'s documentation, where the crate's users read them.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{AllTiersFailed, FallbackError, FallbackReason, ProviderError, TierFailure};
use super::stats::{Attempt, FallbackStats, Recorder};
use super::store::AnswerStore;
use super::tier::{Tier, TierKind};
use crate::policy::{ChainStep, after_provider_failure};

/// An ordered chain of fallback tiers.
///
/// Rules, in the order [`FallbackChain::execute`] applies them:
/// 1. A disabled tier is skipped (and counted as skipped).
/// 2. Each provider call is bounded by its tier's timeout; overrunning it is a
///    [`ProviderError::Timeout`] failure of that provider.
/// 3. The first answer wins. An answer from a live tier (primary, secondary) is given to
///    the chain's [`AnswerStore`] when it has one, so the cache tier can serve it later.
/// 4. A [`ProviderError::Client`] stops the chain at once: invalid input is the caller's
///    fault, so no later tier is asked and no upstream is blamed.
/// 5. Any other failure is recorded and the next provider is tried. When none is left,
///    [`AllTiersFailed`] carries every cause in order.
///
/// Built once with [`FallbackChain::new`] and shared (`Arc`) by every request. Only the
/// tiers' enabled switches change afterwards.
pub struct FallbackChain<Req, Resp> {
    tiers: Vec<Tier<Req, Resp>>,
    store: Option<Arc<dyn AnswerStore<Req, Resp>>>,
    recorder: Recorder,
}

/// An answer, and how the chain came by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served<Resp> {
    /// The provider's answer.
    pub response: Resp,
    /// The tier that answered.
    pub tier: TierKind,
    /// The provider that answered.
    pub provider: String,
    /// Time from the start of `execute` to the answer, failed attempts included.
    pub elapsed: Duration,
    /// What failed before the answer, in order; empty when the first provider answered.
    pub failures: Vec<TierFailure>,
}

impl<Req, Resp> FallbackChain<Req, Resp> {
    /// A chain that tries `tiers` in the order given.
    ///
    /// Fails with [`crate::Error::InvalidConfig`] listing every problem: no tier at all, a
    /// tier kind given twice, or two providers of one tier with the same name (stats are
    /// keyed by these names). A tier without providers is allowed and simply never answers.
    pub fn new(tiers: impl IntoIterator<Item = Tier<Req, Resp>>) -> crate::Result<Self> {
        let tiers: Vec<_> = tiers.into_iter().collect();
        let mut problems = Vec::new();
        if tiers.is_empty() {
            problems.push(String::from("at least one tier is needed"));
        }
        let mut kinds = HashSet::new();
        for tier in &tiers {
            if !kinds.insert(tier.kind()) {
                problems.push(format!("tier `{}` appears more than once", tier.kind()));
            }
            let mut names = HashSet::new();
            for name in tier.provider_names() {
                if !names.insert(name) {
                    problems.push(format!(
                        "tier `{}` has two providers named `{name}`",
                        tier.kind()
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(crate::Error::invalid_config(
                "fallback.tiers",
                problems.join("; "),
            ));
        }
        let recorder = Recorder::new(&tiers);
        Ok(Self {
            tiers,
            store: None,
            recorder,
        })
    }

    /// Gives every primary or secondary answer to `store`. Off by default.
    pub fn with_store(mut self, store: Arc<dyn AnswerStore<Req, Resp>>) -> Self {
        self.store = Some(store);
        self
    }

    /// The tiers, in the order they are tried.
    pub fn tiers(&self) -> &[Tier<Req, Resp>] {
        &self.tiers
    }

    /// The tier of `kind`, if the chain has one.
    pub fn tier(&self, kind: TierKind) -> Option<&Tier<Req, Resp>> {
        self.tiers.iter().find(|t| t.kind() == kind)
    }

    /// Enables or disables the tier of `kind`; returns false when the chain has no such tier.
    pub fn set_enabled(&self, kind: TierKind, enabled: bool) -> bool {
        self.tier(kind).map(|t| t.set_enabled(enabled)).is_some()
    }

    /// A snapshot of the counters, with the store's when the chain has one.
    pub fn stats(&self) -> FallbackStats {
        let cache = self.store.as_ref().and_then(|s| s.stats());
        self.recorder.snapshot(&self.tiers, cache)
    }
}

impl<Req, Resp> FallbackChain<Req, Resp>
where
    Req: Sync,
    Resp: Send + 'static,
{
    /// Tries tier by tier, provider by provider, until one answers, following the rules
    /// listed on [`FallbackChain`].
    ///
    /// Fails with [`FallbackError::Rejected`] as soon as a provider reports a client error,
    /// and with [`FallbackError::AllTiersFailed`] when every enabled provider failed (or
    /// none was enabled). Must run inside a Tokio runtime with time enabled.
    pub async fn execute(&self, req: &Req) -> Result<Served<Resp>, FallbackError> {
        self.recorder.request();
        let result = self.run(req, false).await;
        match &result {
            Ok(served) => self.recorder.served(served.tier),
            Err(FallbackError::Rejected(_)) => self.recorder.rejected(),
            Err(FallbackError::AllTiersFailed(_)) => self.recorder.exhausted(),
        }
        result
    }

    /// Like [`Self::execute`], through the live tiers (primary, secondary) only: for a
    /// part of a request that only an upstream can give (the rest of a streamed answer),
    /// never the cache or the template. Counted as attempts, not as another request.
    pub async fn execute_live(&self, req: &Req) -> Result<Served<Resp>, FallbackError> {
        self.run(req, true).await
    }

    async fn run(&self, req: &Req, live_only: bool) -> Result<Served<Resp>, FallbackError> {
        let started = Instant::now();
        let mut failures = Vec::new();
        let mut disabled = Vec::new();
        for (t, tier) in self.tiers.iter().enumerate() {
            if live_only && !tier.kind().is_live() {
                continue;
            }
            if !tier.is_enabled() {
                self.recorder.skipped(t);
                disabled.push(tier.kind());
                continue;
            }
            for (p, provider) in tier.providers().iter().enumerate() {
                let attempt = Instant::now();
                let outcome = tokio::time::timeout(tier.timeout(), provider.call(req))
                    .await
                    .unwrap_or_else(|_elapsed| Err(ProviderError::timeout(tier.timeout())));
                let took = attempt.elapsed();
                let error = match outcome {
                    Ok(response) => {
                        self.recorder.attempt(t, p, Attempt::Success, took);
                        if tier.kind().is_live() {
                            self.remember(req, &response);
                        }
                        return Ok(Served {
                            response,
                            tier: tier.kind(),
                            provider: provider.name().to_owned(),
                            elapsed: started.elapsed(),
                            failures,
                        });
                    }
                    Err(error) => error,
                };
                let failure = TierFailure {
                    tier: tier.kind(),
                    provider: provider.name().to_owned(),
                    error,
                    elapsed: took,
                };
                if after_provider_failure(&failure.error) == ChainStep::Reject {
                    self.recorder.attempt(t, p, Attempt::Rejected, took);
                    return Err(FallbackError::Rejected(failure));
                }
                self.recorder
                    .attempt(t, p, Attempt::Failure(&failure.error), took);
                tracing::debug!(%failure, "fallback provider failed; trying the next one");
                failures.push(failure);
            }
        }
        Err(AllTiersFailed { failures, disabled }.into())
    }

    fn remember(&self, req: &Req, response: &Resp) {
        if let Some(store) = &self.store {
            store.remember(req, response);
        }
    }
}

impl<Req, Resp> fmt::Debug for FallbackChain<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackChain")
            .field("tiers", &self.tiers)
            .field("caches_live_answers", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl<Resp> Served<Resp> {
    /// Whether a tier other than primary answered (the gateway's `fallback_used`).
    pub fn fallback_used(&self) -> bool {
        self.tier.is_fallback()
    }

    /// The answering tier when it is a fallback (the gateway's `fallback_type`); `None` when
    /// primary answered.
    pub fn fallback_type(&self) -> Option<TierKind> {
        self.fallback_used().then_some(self.tier)
    }

    /// Why primary did not answer (the gateway's `fallback_reason`); `None` when it did.
    /// Derived from primary's last failure, `no_services_available` when primary was never
    /// tried (disabled, absent or without providers).
    pub fn fallback_reason(&self) -> Option<FallbackReason> {
        self.fallback_used()
            .then(|| FallbackReason::from_failures(&self.failures))
    }
}
