//! The discovery client of one service: static instances, an optional registry, and the
//! published snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Mutex, watch};

use super::merge::merge;
use super::snapshot::DiscoverySnapshot;
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::registry::{Instance, ServiceRegistry, StaticRegistry};

/// The default bound on one refresh round (one registry `list`).
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Discovers the instances of one service; share it as `Arc<DiscoveryClient>`.
#[derive(Debug)]
pub struct DiscoveryClient {
    service: String,
    /// Normalized, deduplicated, `source: Static`, in configuration order.
    statics: Vec<Instance>,
    registry: Option<Arc<dyn ServiceRegistry>>,
    clock: SharedClock,
    refresh_timeout: Duration,
    current: ArcSwap<DiscoverySnapshot>,
    /// How long a registry instance stays listed after the registry stopped listing it.
    grace: Duration,
    /// Serializes refresh rounds so an older result never overwrites a newer one; holds
    /// when each registry instance (by id) was last listed.
    round: Mutex<HashMap<String, (Instance, Instant)>>,
    /// The generation of the latest publication, for [`Self::wait_for_generation`].
    published: watch::Sender<u64>,
}

impl DiscoveryClient {
    /// A client of `service` whose snapshot starts as the static instances, with no registry.
    ///
    /// Defaults: no dynamic registry, the system clock, [`DEFAULT_REFRESH_TIMEOUT`] (2 s).
    /// Static URLs are normalized and deduplicated (first wins). Fails with
    /// [`Error::InvalidConfig`] naming the static instance whose URL, id or service is invalid.
    pub fn new(service: impl Into<String>, statics: Vec<Instance>) -> Result<Self> {
        let statics = StaticRegistry::from_instances(statics)?
            .instances()
            .to_vec();
        let initial = DiscoverySnapshot {
            instances: statics.clone(),
            ..DiscoverySnapshot::default()
        };
        Ok(Self {
            service: service.into(),
            statics,
            registry: None,
            clock: SystemClock::shared(),
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            grace: Duration::ZERO,
            current: ArcSwap::from_pointee(initial),
            round: Mutex::new(HashMap::new()),
            published: watch::Sender::new(0),
        })
    }

    /// Adds the dynamic registry that each refresh lists.
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<dyn ServiceRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The clock that stamps `last_refresh` (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Bounds each refresh round (default 2 s); past it the round fails with
    /// [`Error::Timeout`] and the snapshot goes stale.
    #[must_use]
    pub fn with_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    /// Keeps a registry instance listed for `grace` after the registry stops listing it
    /// (default zero: the registry's word is final). A registry that restarts empty (Redis
    /// without persistence) lists nothing until every instance's next heartbeat; with a
    /// grace of about one registry TTL, instances that still pass their health checks keep
    /// serving through that gap. Health checks, not the registry, take a dead one out.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The service this client discovers.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The configured static instances, normalized.
    pub fn static_instances(&self) -> &[Instance] {
        &self.statics
    }

    /// The dynamic registry's backend name (`redis`, `memory`…), or `None` for static only.
    pub fn registry_backend(&self) -> Option<&'static str> {
        self.registry.as_ref().map(|r| r.backend())
    }

    /// The current snapshot. Lock-free and never waits: safe on the request path.
    pub fn snapshot(&self) -> Arc<DiscoverySnapshot> {
        self.current.load_full()
    }

    /// Waits until a snapshot of at least `generation` is published (1 = the first refresh
    /// round finished, whatever its outcome); returns at once if one already is.
    pub async fn wait_for_generation(&self, generation: u64) {
        let mut published = self.published.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = published.wait_for(|&g| g >= generation).await;
    }

    /// One refresh round: lists the registry (bounded by the refresh timeout) and publishes
    /// static ∪ registry.
    ///
    /// On failure the previous instances stay published, marked stale, with the error recorded,
    /// and the error is returned; the next success clears the staleness. Without a registry it
    /// republishes the static list and never fails.
    pub async fn refresh(&self) -> Result<()> {
        let mut last_listed = self.round.lock().await;
        let previous = self.current.load_full();
        let Some(registry) = &self.registry else {
            self.publish(DiscoverySnapshot {
                instances: self.statics.clone(),
                last_refresh: Some(self.clock.now()),
                generation: previous.generation + 1,
                ..DiscoverySnapshot::default()
            });
            return Ok(());
        };
        let listed = tokio::time::timeout(self.refresh_timeout, registry.list(&self.service))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    what: format!("discovery refresh of `{}`", self.service),
                    after_ms: u64::try_from(self.refresh_timeout.as_millis()).unwrap_or(u64::MAX),
                })
            });
        match listed {
            Ok(mut dynamic) => {
                if previous.stale {
                    tracing::info!(service = %self.service, "discovery refresh recovered");
                }
                let now = self.clock.now();
                for instance in &dynamic {
                    last_listed.insert(instance.id.clone(), (instance.clone(), now));
                }
                let grace = self.grace;
                last_listed.retain(|_, (_, at)| {
                    !grace.is_zero() && now.saturating_duration_since(*at) <= grace
                });
                let listed: HashSet<&str> = dynamic.iter().map(|i| i.id.as_str()).collect();
                let lingering: Vec<Instance> = last_listed
                    .values()
                    .filter(|(instance, _)| !listed.contains(instance.id.as_str()))
                    .map(|(instance, _)| instance.clone())
                    .collect();
                if !lingering.is_empty() {
                    tracing::debug!(service = %self.service, count = lingering.len(),
                        "keeping instances the registry no longer lists, within the grace period");
                }
                dynamic.extend(lingering);
                self.publish(DiscoverySnapshot {
                    instances: merge(&self.statics, dynamic),
                    last_refresh: Some(self.clock.now()),
                    generation: previous.generation + 1,
                    ..DiscoverySnapshot::default()
                });
                Ok(())
            }
            Err(error) => {
                if previous.consecutive_failures == 0 {
                    tracing::warn!(service = %self.service, %error,
                        "discovery refresh failed; serving the last known instances");
                } else {
                    tracing::debug!(service = %self.service, %error, "discovery refresh failed again");
                }
                self.publish(DiscoverySnapshot {
                    instances: previous.instances.clone(),
                    stale: true,
                    last_refresh: previous.last_refresh,
                    last_error: Some(error.to_string()),
                    consecutive_failures: previous.consecutive_failures.saturating_add(1),
                    generation: previous.generation + 1,
                });
                Err(error)
            }
        }
    }

    fn publish(&self, snapshot: DiscoverySnapshot) {
        let generation = snapshot.generation;
        self.current.store(Arc::new(snapshot));
        self.published.send_replace(generation);
    }
}
