//! Counters of a fallback chain, and their serialisable snapshot for `/metrics`.
//!
//! The chain records into lock-free atomics laid out once, when it is built (one slot per
//! tier and provider), so recording costs a few relaxed increments and no lookup.
//! [`FallbackStats`] is the point-in-time copy the gateway serialises, keyed by tier name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cache::CacheStats;
use super::error::ProviderError;
use super::tier::{Tier, TierKind};

/// A snapshot of a chain's counters, taken by
/// [`FallbackChain::stats`](super::FallbackChain::stats).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FallbackStats {
    /// Calls to `execute`.
    pub requests: u64,
    /// Requests answered by any tier.
    pub served: u64,
    /// The part of `served` answered by a tier other than primary.
    pub served_by_fallback: u64,
    /// Requests stopped by a client error.
    pub rejected: u64,
    /// Requests that no tier answered.
    pub exhausted: u64,
    /// Per tier, keyed by its lowercase name (`"primary"`, `"cache"`, …).
    pub tiers: BTreeMap<String, TierStats>,
    /// The response cache's counters, when the chain stores into one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStats>,
}

/// One tier's counters: the sums over its providers plus the tier's own settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TierStats {
    /// Position in the chain, from 0; the map is sorted by name, not by order.
    pub position: usize,
    /// Whether the tier is enabled now.
    pub enabled: bool,
    /// The per-provider timeout, in milliseconds.
    pub timeout_ms: u64,
    /// Answers given.
    pub successes: u64,
    /// Failed attempts (timeouts included, rejections not).
    pub failures: u64,
    /// The part of `failures` that were timeouts.
    pub timeouts: u64,
    /// Attempts that found the request invalid.
    pub rejected: u64,
    /// Requests that reached the tier while it was disabled.
    pub skipped: u64,
    /// Latency of every attempt, whatever its outcome.
    pub latency: LatencyStats,
    /// Per provider, keyed by provider name.
    pub providers: BTreeMap<String, ProviderStats>,
}

/// One provider's counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderStats {
    /// Answers given.
    pub successes: u64,
    /// Failed attempts (timeouts included, rejections not).
    pub failures: u64,
    /// The part of `failures` that were timeouts.
    pub timeouts: u64,
    /// Attempts that found the request invalid.
    pub rejected: u64,
    /// Latency of every attempt, whatever its outcome.
    pub latency: LatencyStats,
}

/// Count, total, mean and maximum of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct LatencyStats {
    /// Attempts measured.
    pub count: u64,
    /// Sum of their latencies.
    pub total_ms: f64,
    /// `total_ms / count`, or 0 with no attempt.
    pub mean_ms: f64,
    /// The slowest attempt.
    pub max_ms: f64,
}

/// How one provider attempt ended, as far as the counters care.
pub(super) enum Attempt<'a> {
    Success,
    Failure(&'a ProviderError),
    Rejected,
}

/// The chain's live counters; one slot per tier and provider, fixed at build time.
pub(super) struct Recorder {
    requests: AtomicU64,
    served: AtomicU64,
    served_by_fallback: AtomicU64,
    rejected: AtomicU64,
    exhausted: AtomicU64,
    tiers: Vec<TierCounters>,
}

struct TierCounters {
    kind: TierKind,
    skipped: AtomicU64,
    providers: Vec<ProviderCounters>,
}

#[derive(Default)]
struct ProviderCounters {
    name: String,
    successes: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    rejected: AtomicU64,
    count: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

impl Recorder {
    pub(super) fn new<Req, Resp>(tiers: &[Tier<Req, Resp>]) -> Self {
        let tiers = tiers
            .iter()
            .map(|tier| TierCounters {
                kind: tier.kind(),
                skipped: AtomicU64::new(0),
                providers: tier
                    .provider_names()
                    .map(|name| ProviderCounters {
                        name: name.to_owned(),
                        ..ProviderCounters::default()
                    })
                    .collect(),
            })
            .collect();
        Self {
            requests: AtomicU64::new(0),
            served: AtomicU64::new(0),
            served_by_fallback: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            tiers,
        }
    }

    pub(super) fn request(&self) {
        bump(&self.requests);
    }

    pub(super) fn exhausted(&self) {
        bump(&self.exhausted);
    }

    /// A request answered by a tier of `kind`.
    pub(super) fn served(&self, kind: TierKind) {
        bump(&self.served);
        if kind.is_fallback() {
            bump(&self.served_by_fallback);
        }
    }

    /// A request stopped by a client error.
    pub(super) fn rejected(&self) {
        bump(&self.rejected);
    }

    pub(super) fn skipped(&self, tier: usize) {
        if let Some(t) = self.tiers.get(tier) {
            bump(&t.skipped);
        }
    }

    pub(super) fn attempt(
        &self,
        tier: usize,
        provider: usize,
        outcome: Attempt<'_>,
        took: Duration,
    ) {
        let Some(t) = self.tiers.get(tier) else {
            return;
        };
        let Some(p) = t.providers.get(provider) else {
            return;
        };
        match outcome {
            Attempt::Success => bump(&p.successes),
            Attempt::Failure(error) => {
                bump(&p.failures);
                if matches!(error, ProviderError::Timeout { .. }) {
                    bump(&p.timeouts);
                }
            }
            Attempt::Rejected => bump(&p.rejected),
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        bump(&p.count);
        p.total_us.fetch_add(us, Ordering::Relaxed);
        p.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub(super) fn snapshot<Req, Resp>(
        &self,
        tiers: &[Tier<Req, Resp>],
        cache: Option<CacheStats>,
    ) -> FallbackStats {
        let tiers = self
            .tiers
            .iter()
            .zip(tiers)
            .enumerate()
            .map(|(position, (counters, tier))| {
                let stats = counters.snapshot(position, tier);
                (counters.kind.as_str().to_owned(), stats)
            })
            .collect();
        FallbackStats {
            requests: load(&self.requests),
            served: load(&self.served),
            served_by_fallback: load(&self.served_by_fallback),
            rejected: load(&self.rejected),
            exhausted: load(&self.exhausted),
            tiers,
            cache,
        }
    }
}

impl TierCounters {
    fn snapshot<Req, Resp>(&self, position: usize, tier: &Tier<Req, Resp>) -> TierStats {
        let mut stats = TierStats {
            position,
            enabled: tier.is_enabled(),
            timeout_ms: u64::try_from(tier.timeout().as_millis()).unwrap_or(u64::MAX),
            successes: 0,
            failures: 0,
            timeouts: 0,
            rejected: 0,
            skipped: load(&self.skipped),
            latency: LatencyStats::default(),
            providers: BTreeMap::new(),
        };
        let (mut count, mut total_us, mut max_us) = (0, 0_u64, 0);
        for p in &self.providers {
            let provider = p.snapshot();
            stats.successes += provider.successes;
            stats.failures += provider.failures;
            stats.timeouts += provider.timeouts;
            stats.rejected += provider.rejected;
            count += load(&p.count);
            total_us = total_us.saturating_add(load(&p.total_us));
            max_us = max_us.max(load(&p.max_us));
            stats.providers.insert(p.name.clone(), provider);
        }
        stats.latency = LatencyStats::from_micros(count, total_us, max_us);
        stats
    }
}

impl ProviderCounters {
    fn snapshot(&self) -> ProviderStats {
        ProviderStats {
            successes: load(&self.successes),
            failures: load(&self.failures),
            timeouts: load(&self.timeouts),
            rejected: load(&self.rejected),
            latency: LatencyStats::from_micros(
                load(&self.count),
                load(&self.total_us),
                load(&self.max_us),
            ),
        }
    }
}

impl LatencyStats {
    fn from_micros(count: u64, total_us: u64, max_us: u64) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count,
            total_ms: ms(total_us),
            mean_ms: if count == 0 {
                0.0
            } else {
                ms(total_us) / count as f64
            },
            max_ms: ms(max_us),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
