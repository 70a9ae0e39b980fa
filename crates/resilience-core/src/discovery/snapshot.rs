//! The immutable view a [`DiscoveryClient`](super::DiscoveryClient) publishes after each round.

use std::time::{Duration, Instant};

use crate::registry::Instance;

/// One published view of a service's instances; cheap to share, never mutated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverySnapshot {
    /// Static ∪ registry instances, one per normalized base URL, in merge order.
    pub instances: Vec<Instance>,
    /// Whether the last refresh failed, so `instances` hold the last good registry list.
    pub stale: bool,
    /// When the registry was last read successfully (from the client's clock); `None` before.
    pub last_refresh: Option<Instant>,
    /// The failure of the latest refresh while stale; `None` once a refresh succeeds.
    pub last_error: Option<String>,
    /// Refreshes failed in a row; 0 after a success.
    pub consecutive_failures: u32,
    /// Bumped on every publication (success or failure); 0 for the initial snapshot.
    pub generation: u64,
}

impl DiscoverySnapshot {
    /// The instances, in merge order.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// How many instances are known.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether no instance is known.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Whether the registry part is the last good list rather than a fresh one.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// The instance with `id`, if known.
    pub fn find(&self, id: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// The instances serving `tier` (see [`Instance::tier`]), in merge order.
    pub fn in_tier<'a>(&'a self, tier: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.iter().filter(move |i| i.tier() == tier)
    }

    /// Time since the last successful refresh, measured at `now`; `None` if there was none.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.last_refresh
            .map(|at| now.saturating_duration_since(at))
    }
}
