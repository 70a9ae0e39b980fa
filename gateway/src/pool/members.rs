//! The pool's members: one balancer endpoint per instance of the pool's tier, rebuilt when
//! discovery publishes a new generation.
//!
//! Endpoints are kept across rebuilds while their instance is unchanged, so the in-flight
//! counts that power-of-two-choices compares survive discovery refreshes (one a second).
//! Instance breakers live in their own map keyed by id and outlive snapshots: an instance
//! that drops out of the registry for a moment comes back still ejected. A breaker whose
//! instance left is forgotten only once it remembers nothing (CLOSED, no failure run).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use resilience_core::balancer::Endpoint;
use resilience_core::breaker::{Breaker, StateKind};
use resilience_core::discovery::DiscoverySnapshot;
use resilience_core::registry::Instance;

use super::{MemberEndpoint, Pool};
use crate::upstream::{Protocol, Upstream};

/// One instance of the pool, as the balancer holds it.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) tier: String,
    /// The `model` label of the instance, if it announced one.
    pub(crate) label: Option<String>,
    /// The model the instance last answered with, for instances without a label (static
    /// URLs), so metrics and `/health` can still name it.
    pub(crate) learned: ArcSwapOption<String>,
    pub(crate) breaker: Arc<Breaker>,
    /// Its breaker's label in the metrics: `instance:<id>`, or `endpoint:<id>` for a fixed
    /// endpoint (made once here, not per call).
    pub(crate) breaker_label: String,
    /// How it is spoken to, and where (parsed once, here).
    pub(crate) upstream: Upstream,
    /// Whether the active health checker probes it (discovered instances); an endpoint is
    /// judged by its breaker alone.
    pub(crate) checked: bool,
    /// Milliseconds after the pool's origin before which it takes no traffic (it asked so
    /// with `Retry-After`).
    cooldown_until_ms: AtomicU64,
}

/// The members of one discovery generation.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// The discovery generation these were built from; `None` before the first build.
    pub(crate) generation: Option<u64>,
    pub(crate) endpoints: Vec<MemberEndpoint>,
}

impl Member {
    /// The model to name: the label, else the last one seen answering.
    pub(crate) fn model(&self) -> Option<String> {
        self.label
            .clone()
            .or_else(|| self.learned.load_full().map(|m| m.as_ref().clone()))
    }

    /// Remembers the model the instance answered with (when it has no label).
    pub(crate) fn learn_model(&self, model: &str) {
        if self.label.is_some() || model.is_empty() {
            return;
        }
        let known = self.learned.load();
        if known.as_deref().map(String::as_str) != Some(model) {
            self.learned.store(Some(Arc::new(model.to_owned())));
        }
    }

    /// Keeps traffic away until `until` (later cooldowns win).
    pub(crate) fn cool_down(&self, origin: Instant, until: Instant) {
        let ms = millis_since(origin, until);
        self.cooldown_until_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// How long it still asked for no traffic at `now`, if it did.
    pub(crate) fn cooldown_left(&self, origin: Instant, now: Instant) -> Option<Duration> {
        let until = self.cooldown_until_ms.load(Ordering::Acquire);
        let at = millis_since(origin, now);
        (until > at).then(|| Duration::from_millis(until - at))
    }

    /// Whether `instance` is still what this member stands for.
    fn matches(&self, instance: &Instance) -> bool {
        self.id == instance.id
            && self.url == instance.url
            && self.label.as_deref() == instance.model()
    }
}

impl Pool {
    /// The members for `snapshot`, rebuilt if it is newer than the ones published.
    pub(crate) fn members_for(&self, snapshot: &DiscoverySnapshot) -> Arc<Members> {
        let current = self.members.load_full();
        if current.generation >= Some(snapshot.generation) {
            return current;
        }
        if let Some(endpoint) = &self.settings.endpoint {
            return self.fixed_member(endpoint);
        }
        let mut breakers = self.lock_breakers();
        // Another request may have rebuilt while we waited for the lock.
        let current = self.members.load_full();
        if current.generation >= Some(snapshot.generation) {
            return current;
        }
        let mut endpoints = Vec::new();
        for instance in snapshot.in_tier(&self.settings.tier) {
            if endpoints
                .iter()
                .any(|e: &MemberEndpoint| e.value().id == instance.id)
            {
                continue; // one endpoint per id, the first in merge order
            }
            let kept = current
                .endpoints
                .iter()
                .find(|e| e.value().matches(instance))
                .cloned();
            let endpoint = match kept {
                Some(endpoint) => endpoint,
                None => {
                    // Only an invalid configuration fails, and `Pool::new` replaced one.
                    let Some(breaker) = self.breaker_for(&mut breakers, &instance.id) else {
                        continue;
                    };
                    let learned = current
                        .endpoints
                        .iter()
                        .find(|e| e.value().id == instance.id)
                        .and_then(|e| e.value().learned.load_full());
                    Endpoint::new(Member {
                        id: instance.id.clone(),
                        url: instance.url.clone(),
                        tier: instance.tier().to_owned(),
                        label: instance.model().map(str::to_owned),
                        learned: ArcSwapOption::new(learned),
                        breaker,
                        breaker_label: format!("instance:{}", instance.id),
                        upstream: Upstream::lab(&instance.url),
                        checked: true,
                        cooldown_until_ms: AtomicU64::new(0),
                    })
                }
            };
            endpoints.push(endpoint);
        }
        breakers.retain(|id, breaker| {
            endpoints.iter().any(|e| &e.value().id == id) || remembers(breaker)
        });
        let members = Arc::new(Members {
            generation: Some(snapshot.generation),
            endpoints,
        });
        self.members.store(Arc::clone(&members));
        members
    }

    /// The one member of an endpoint pool, built once (it never changes).
    fn fixed_member(&self, endpoint: &super::EndpointSpec) -> Arc<Members> {
        let mut breakers = self.lock_breakers();
        let current = self.members.load_full();
        if current.generation.is_some() {
            return current;
        }
        let endpoints = self
            .breaker_for(&mut breakers, &endpoint.id)
            .map(|breaker| {
                let label = match &endpoint.protocol {
                    Protocol::OpenAi { model, .. } => Some(model.clone()),
                    Protocol::Lab => None,
                };
                Endpoint::new(Member {
                    id: endpoint.id.clone(),
                    url: endpoint.url.clone(),
                    tier: self.settings.tier.clone(),
                    label,
                    learned: ArcSwapOption::new(None),
                    breaker,
                    breaker_label: format!("endpoint:{}", endpoint.id),
                    upstream: Upstream::new(&endpoint.url, endpoint.protocol.clone()),
                    checked: false,
                    cooldown_until_ms: AtomicU64::new(0),
                })
            })
            .into_iter()
            .collect();
        let members = Arc::new(Members {
            generation: Some(u64::MAX),
            endpoints,
        });
        self.members.store(Arc::clone(&members));
        members
    }

    /// The breaker of instance `id`, created (CLOSED) if it has none yet; `None` (logged)
    /// only if the breaker configuration is invalid.
    fn breaker_for(
        &self,
        breakers: &mut BTreeMap<String, Arc<Breaker>>,
        id: &str,
    ) -> Option<Arc<Breaker>> {
        if let Some(breaker) = breakers.get(id) {
            return Some(Arc::clone(breaker));
        }
        let config = self.settings.instance_breaker.clone();
        let breaker = match Breaker::new(format!("instance:{id}"), config, self.clock.clone()) {
            Ok(breaker) => Arc::new(breaker.with_hook(Arc::clone(&self.on_transition))),
            Err(error) => {
                tracing::error!(pool = %self.settings.name, instance = id, %error,
                    "cannot create the instance breaker; instance left out");
                return None;
            }
        };
        breakers.insert(id.to_owned(), Arc::clone(&breaker));
        Some(breaker)
    }

    pub(crate) fn lock_breakers(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Breaker>>> {
        // Nothing panics while holding the lock, so a poisoned map is still sound.
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn millis_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
}

/// Whether a breaker carries state worth keeping after its instance left discovery.
fn remembers(breaker: &Breaker) -> bool {
    let snapshot = breaker.snapshot();
    snapshot.state != StateKind::Closed || snapshot.consecutive_failures > 0
}
