//! The health of every known instance, shared between the request path and the checkers.
//!
//! The request path asks [`HealthTracker::is_healthy`] for every pick, so that read takes no
//! lock: the set of instances is an [`ArcSwap`]ped map replaced only when an instance comes
//! or goes, and each instance publishes its status in an atomic next to the mutex-guarded
//! state machine that only the recorders take.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::active::TransitionHook;
use super::config::HealthCheckConfig;
use super::instance::{HealthTransition, InstanceHealth, InstanceStatus};
use crate::Result;
use crate::clock::{SharedClock, unix_millis};

/// One instance's health as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceHealthReport {
    /// The instance id.
    pub id: String,
    /// `unknown`, `healthy` or `unhealthy`.
    pub status: InstanceStatus,
    /// Whether it takes traffic (`status == healthy`).
    pub healthy: bool,
    /// Current run of passed active checks.
    pub consecutive_successes: u32,
    /// Current run of failed active checks.
    pub consecutive_failures: u32,
    /// Current run of failed real requests.
    pub consecutive_passive_failures: u32,
    /// Message of the last failed active check, if any.
    pub last_error: Option<String>,
    /// Milliseconds since the last active check; `None` before the first.
    pub last_check_age_ms: Option<u64>,
    /// Wall-clock time of the last active check, in Unix milliseconds.
    pub last_check_at_ms: Option<u64>,
    /// Duration of the last active check, in milliseconds.
    pub last_latency_ms: Option<u64>,
}

/// The health of a set of instances keyed by instance id; thread-safe, shared as
/// `Arc<HealthTracker>` between the active checker, the request path and `/health`.
///
/// Instances enter when first tracked or actively checked and leave through
/// [`HealthTracker::retain`]; an id it does not know is never healthy.
pub struct HealthTracker {
    config: HealthCheckConfig,
    clock: SharedClock,
    cells: ArcSwap<HashMap<String, Arc<Cell>>>,
    /// Serialises replacements of `cells`, so two inserts never lose one another.
    writer: Mutex<()>,
    /// Told of every transition, active or passive, after the instance's lock is released.
    hook: Option<TransitionHook>,
}

impl std::fmt::Debug for HealthTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthTracker")
            .field("config", &self.config)
            .field("instances", &self.cells.load().len())
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Cell {
    status: AtomicU8,
    state: Mutex<InstanceHealth>,
}

impl HealthTracker {
    /// An empty tracker applying `config`, reading instants from `clock`.
    ///
    /// Fails with [`crate::Error::InvalidConfig`] when `config` does not validate.
    pub fn new(config: HealthCheckConfig, clock: SharedClock) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            clock,
            cells: ArcSwap::from_pointee(HashMap::new()),
            writer: Mutex::new(()),
            hook: None,
        })
    }

    /// Calls `hook` with the instance id for every transition from now on, whether an active
    /// check or real traffic caused it; it runs on the caller's task (the checker's, or a
    /// request's), so it must not block.
    pub fn with_hook(mut self, hook: TransitionHook) -> Self {
        self.hook = Some(hook);
        self
    }

    fn notify(&self, id: &str, transition: Option<HealthTransition>) -> Option<HealthTransition> {
        if let (Some(hook), Some(t)) = (&self.hook, &transition) {
            hook(id, t);
        }
        transition
    }

    /// The configuration every instance's state machine applies.
    pub fn config(&self) -> &HealthCheckConfig {
        &self.config
    }

    /// The clock the tracker stamps results with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Whether instance `id` may take traffic; `false` for an unknown id or an instance
    /// without a result yet. Takes no lock: safe on the request path.
    pub fn is_healthy(&self, id: &str) -> bool {
        self.status(id) == Some(InstanceStatus::Healthy)
    }

    /// The status of instance `id`, `None` when it is not tracked. Takes no lock.
    pub fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.cells
            .load()
            .get(id)
            .map(|cell| decode(cell.status.load(Ordering::Acquire)))
    }

    /// Starts tracking `id` as [`InstanceStatus::Unknown`] if it is not tracked yet; returns
    /// whether it was added. Lets `/health` list an instance before its first check.
    pub fn track(&self, id: &str) -> bool {
        if self.cells.load().contains_key(id) {
            return false;
        }
        let _writer = lock(&self.writer);
        if self.cells.load().contains_key(id) {
            return false;
        }
        self.insert_locked(id);
        true
    }

    /// Records an active check of `id` that took `latency` (`Err` carries the failure's
    /// message), stamped with the clock's current instant; tracks `id` if needed.
    ///
    /// Returns the transition it caused; see [`InstanceHealth::record_active`].
    pub fn record_active(
        &self,
        id: &str,
        latency: Duration,
        result: Result<(), String>,
    ) -> Option<HealthTransition> {
        let cell = self.cell_or_insert(id);
        let now = self.clock.now();
        let transition = {
            let mut state = lock(&cell.state);
            let transition = state.record_active(now, latency, result);
            cell.status.store(encode(state.status()), Ordering::Release);
            transition
        };
        self.notify(id, transition)
    }

    /// Records whether a real request to `id` succeeded; see
    /// [`InstanceHealth::record_passive`]. An id that is not tracked is ignored (returns
    /// `None`): traffic must not resurrect an instance that discovery dropped.
    pub fn record_passive(&self, id: &str, ok: bool) -> Option<HealthTransition> {
        let cell = self.cells.load().get(id).cloned()?;
        let now = self.clock.now();
        let transition = {
            let mut state = lock(&cell.state);
            let transition = state.record_passive(now, ok);
            cell.status.store(encode(state.status()), Ordering::Release);
            transition
        };
        self.notify(id, transition)
    }

    /// Forgets every instance whose id is not in `keep` (instances that left discovery);
    /// returns how many were dropped. Ids in `keep` that are not tracked are not added.
    pub fn retain<I, S>(&self, keep: I) -> usize
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let _writer = lock(&self.writer);
        let current = self.cells.load_full();
        let mut kept = HashMap::with_capacity(current.len());
        for id in keep {
            if let Some((key, cell)) = current.get_key_value(id.as_ref()) {
                kept.insert(key.clone(), Arc::clone(cell));
            }
        }
        let dropped = current.len() - kept.len();
        if dropped > 0 {
            self.cells.store(Arc::new(kept));
        }
        dropped
    }

    /// Every tracked instance's health, sorted by id, with ages measured from now.
    pub fn snapshot(&self) -> Vec<InstanceHealthReport> {
        let cells = self.cells.load_full();
        let now = self.clock.now();
        let mut reports: Vec<InstanceHealthReport> = cells
            .iter()
            .map(|(id, cell)| {
                let state = lock(&cell.state);
                let last_check = state.last_check();
                InstanceHealthReport {
                    id: id.clone(),
                    status: state.status(),
                    healthy: state.is_healthy(),
                    consecutive_successes: state.consecutive_successes(),
                    consecutive_failures: state.consecutive_failures(),
                    consecutive_passive_failures: state.consecutive_passive_failures(),
                    last_error: state.last_error().map(str::to_owned),
                    last_check_age_ms: last_check
                        .map(|at| millis(now.saturating_duration_since(at))),
                    last_check_at_ms: last_check.map(|at| unix_millis(self.clock.wall_at(at))),
                    last_latency_ms: state.last_latency().map(millis),
                }
            })
            .collect();
        reports.sort_by(|a, b| a.id.cmp(&b.id));
        reports
    }

    /// How many tracked instances are healthy now. Takes no lock.
    pub fn healthy_count(&self) -> usize {
        self.cells
            .load()
            .values()
            .filter(|cell| decode(cell.status.load(Ordering::Acquire)) == InstanceStatus::Healthy)
            .count()
    }

    /// How many instances are tracked.
    pub fn len(&self) -> usize {
        self.cells.load().len()
    }

    /// Whether no instance is tracked.
    pub fn is_empty(&self) -> bool {
        self.cells.load().is_empty()
    }

    fn cell_or_insert(&self, id: &str) -> Arc<Cell> {
        if let Some(cell) = self.cells.load().get(id) {
            return Arc::clone(cell);
        }
        let _writer = lock(&self.writer);
        if let Some(cell) = self.cells.load().get(id) {
            return Arc::clone(cell);
        }
        self.insert_locked(id)
    }

    /// Inserts a fresh cell for `id`; the caller holds `writer`.
    fn insert_locked(&self, id: &str) -> Arc<Cell> {
        let cell = Arc::new(Cell {
            status: AtomicU8::new(encode(InstanceStatus::Unknown)),
            state: Mutex::new(InstanceHealth::new(self.config)),
        });
        let mut next = HashMap::clone(&self.cells.load());
        next.insert(id.to_owned(), Arc::clone(&cell));
        self.cells.store(Arc::new(next));
        cell
    }
}

#[cfg(test)]
impl HealthTracker {
    /// Runs `f` while this thread holds every lock the tracker has for `id`, to prove that
    /// the hot-path reads take none.
    pub(super) fn with_locks_held<R>(&self, id: &str, f: impl FnOnce() -> R) -> R {
        let _writer = lock(&self.writer);
        let cell = self.cells.load().get(id).cloned();
        let _state = cell.as_ref().map(|cell| lock(&cell.state));
        f()
    }
}

/// Locks `mutex`, carrying on after a panic elsewhere: the guarded state stays consistent
/// because every update to it is a handful of plain assignments.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn encode(status: InstanceStatus) -> u8 {
    match status {
        InstanceStatus::Unknown => 0,
        InstanceStatus::Healthy => 1,
        InstanceStatus::Unhealthy => 2,
    }
}

fn decode(value: u8) -> InstanceStatus {
    match value {
        1 => InstanceStatus::Healthy,
        2 => InstanceStatus::Unhealthy,
        _ => InstanceStatus::Unknown,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
