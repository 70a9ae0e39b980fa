//! [`FaultSet`]: the active faults, shared by the handlers behind an `Arc`.
//!
//! One mutex guards the list; it is taken only while faults exist (an atomic count answers
//! "none" without it), so a fault-free service pays one atomic load per request. Expiry is
//! checked on every access, so no answer depends on when the reaper last ran; the reaper only
//! frees what nobody asks about (a memory fault's bytes, a CPU fault's threads) on time.
//! Entries leave the list under the lock but are logged and dropped after it is released.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use llm_api::FieldError;
use llm_api::fault::{FaultKind, FaultSpec, FaultView};
use rand::RngExt;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::effects::RequestFaults;
use super::entry::{Entry, Exit};
use super::resource::{Resource, ResourceCounters};

/// How often [`FaultSet::spawn_reaper`] removes expired faults.
pub const REAP_INTERVAL: Duration = Duration::from_millis(100);

/// The active faults, oldest first. Thread-safe; share it as `Arc<FaultSet>`.
pub struct FaultSet {
    entries: Mutex<Vec<Entry>>,
    /// `entries.len()`, readable without the lock.
    len: AtomicUsize,
    next_id: AtomicU64,
    counters: Arc<ResourceCounters>,
}

/// The most faults active at once.
pub const MAX_FAULTS: usize = 256;

impl FaultSet {
    /// No faults.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Validates `spec`, starts it (resource faults begin at once: threads spin, memory is
    /// touched, which takes a moment for large `mb`: call it from a blocking task then) and
    /// returns its view with a new id (`f-1`, `f-2`…). The error names the bad field; a
    /// resource that cannot start (no thread, no memory) also fails, naming its field.
    pub fn add(&self, spec: FaultSpec) -> Result<FaultView, FieldError> {
        spec.validate()?;
        if self.len.load(Ordering::Acquire) >= MAX_FAULTS {
            return Err(FieldError::new(
                "kind",
                format!("{MAX_FAULTS} faults are active already; delete some first"),
            ));
        }
        let resource = Resource::start(&spec.kind, &self.counters)?;
        // Read after the resource started: a slow allocation must not eat its own duration.
        let now = Instant::now();
        let id = format!("f-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let mut entry = Entry::new(id, spec, now)?;
        entry._resource = resource;
        let view = entry.view(now);
        tracing::warn!(
            fault_id = %view.id,
            kind = view.spec.kind_name(),
            rate = view.spec.rate,
            duration_s = ?view.spec.duration_s,
            count = ?view.spec.count,
            "fault added"
        );
        let expired = {
            let mut entries = self.lock();
            let expired = self.take_expired(&mut entries, now);
            entries.push(entry);
            self.len.store(entries.len(), Ordering::Release);
            expired
        };
        retire(expired);
        Ok(view)
    }

    /// The active faults, oldest first.
    pub fn list(&self) -> Vec<FaultView> {
        self.read(|entries, now| entries.iter().map(|e| e.view(now)).collect())
    }

    /// Removes one fault, stopping it; false if no active fault has that id.
    pub fn remove(&self, id: &str) -> bool {
        let now = Instant::now();
        let gone = {
            let mut entries = self.lock();
            let mut gone = self.take_expired(&mut entries, now);
            let removed: Vec<Entry> = entries.extract_if(.., |e| e.id == id).collect();
            self.len.store(entries.len(), Ordering::Release);
            gone.extend(removed.into_iter().map(|e| (e, Exit::Removed)));
            gone
        };
        let found = gone.iter().any(|(_, exit)| *exit == Exit::Removed);
        retire(gone);
        found
    }

    /// Removes every fault, stopping them; returns how many were active.
    pub fn clear(&self) -> usize {
        let now = Instant::now();
        let gone = {
            let mut entries = self.lock();
            let mut gone = self.take_expired(&mut entries, now);
            gone.extend(entries.drain(..).map(|e| (e, Exit::Cleared)));
            self.len.store(0, Ordering::Release);
            gone
        };
        let cleared = gone
            .iter()
            .filter(|(_, exit)| *exit == Exit::Cleared)
            .count();
        retire(gone);
        cleared
    }

    /// The kind of each active fault, oldest first (`latency`, `cpu_burn`…), one per fault.
    pub fn active_kinds(&self) -> Vec<String> {
        self.read(|entries, _| {
            entries
                .iter()
                .map(|e| e.spec.kind_name().to_owned())
                .collect()
        })
    }

    /// Whether an `unhealthy` fault is active; `/health` then answers 503.
    pub fn is_unhealthy(&self) -> bool {
        self.read(|entries, _| {
            entries
                .iter()
                .any(|e| matches!(e.spec.kind, FaultKind::Unhealthy))
        })
    }

    /// Draws what the active faults do to one request, oldest fault first. Request faults
    /// (latency, error, hang, reset, malformed) apply to every request, stream faults only
    /// when `streaming`. Each applicable fault hits with probability `rate` (a hit counts in
    /// `hits`); `count` is the number of applicable requests the fault covers, hit or not
    /// ("the first N requests only"), and a fault whose count reaches 0 is removed.
    /// Latencies add up; the oldest error that hits is the answer.
    pub fn for_request(&self, streaming: bool) -> RequestFaults {
        let mut faults = RequestFaults::default();
        if self.len.load(Ordering::Acquire) == 0 {
            return faults;
        }
        let now = Instant::now();
        let gone = {
            let mut entries = self.lock();
            let mut gone = self.take_expired(&mut entries, now);
            let mut rng = rand::rng();
            let used_up: Vec<Entry> = entries
                .extract_if(.., |e| {
                    if !e.scope.covers(streaming) {
                        return false;
                    }
                    if hits(e.spec.rate, &mut rng) {
                        e.hits += 1;
                        faults.apply(&e.spec.kind);
                    }
                    match e.remaining.as_mut() {
                        Some(left) => {
                            *left = left.saturating_sub(1);
                            *left == 0
                        }
                        None => false,
                    }
                })
                .collect();
            self.len.store(entries.len(), Ordering::Release);
            gone.extend(used_up.into_iter().map(|e| (e, Exit::UsedUp)));
            gone
        };
        retire(gone);
        faults
    }

    /// Removes the expired faults now; returns how many. The reaper calls it; every other
    /// method also does it first, so nobody needs to call it for correct answers.
    pub fn reap(&self) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let gone = {
            let mut entries = self.lock();
            self.take_expired(&mut entries, Instant::now())
        };
        let n = gone.len();
        retire(gone);
        n
    }

    /// Spawns the task that calls [`reap`](Self::reap) every [`REAP_INTERVAL`], so resource
    /// faults stop on time even when no request comes. The task holds only a weak reference
    /// and ends by itself once the set is dropped; abort the handle to stop it sooner.
    pub fn spawn_reaper(self: &Arc<Self>) -> JoinHandle<()> {
        let set = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_INTERVAL);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(set) = set.upgrade() else { break };
                set.reap();
            }
        })
    }

    /// Threads `cpu_burn` faults are spinning now (threads of a removed fault count until
    /// they notice the stop flag, within microseconds).
    pub fn burning_threads(&self) -> usize {
        self.counters.burning_threads.load(Ordering::SeqCst)
    }

    /// Bytes `memory` faults hold now.
    pub fn held_memory_bytes(&self) -> u64 {
        self.counters.held_bytes.load(Ordering::SeqCst)
    }

    /// Runs `f` on the unexpired entries at the current instant.
    fn read<T: Default>(&self, f: impl FnOnce(&[Entry], Instant) -> T) -> T {
        if self.len.load(Ordering::Acquire) == 0 {
            return T::default();
        }
        let now = Instant::now();
        let (value, gone) = {
            let mut entries = self.lock();
            let gone = self.take_expired(&mut entries, now);
            (f(entries.as_slice(), now), gone)
        };
        retire(gone);
        value
    }

    /// Takes the entries expired at `now` out of the list (to be retired once unlocked).
    fn take_expired(&self, entries: &mut Vec<Entry>, now: Instant) -> Vec<(Entry, Exit)> {
        let expired: Vec<(Entry, Exit)> = entries
            .extract_if(.., |e| e.is_expired(now))
            .map(|e| (e, Exit::Expired))
            .collect();
        if !expired.is_empty() {
            self.len.store(entries.len(), Ordering::Release);
        }
        expired
    }

    /// The list, even if a thread panicked while holding it: every update leaves it whole.
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for FaultSet {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            counters: Arc::new(ResourceCounters::default()),
        }
    }
}

impl std::fmt::Debug for FaultSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultSet")
            .field("active", &self.len.load(Ordering::Relaxed))
            .field("burning_threads", &self.burning_threads())
            .field("held_memory_bytes", &self.held_memory_bytes())
            .finish_non_exhaustive()
    }
}

/// Whether a fault of `rate` (validated: 0 < rate ≤ 1) hits this request.
fn hits(rate: f64, rng: &mut impl RngExt) -> bool {
    rate >= 1.0 || rng.random_bool(rate)
}

/// Logs and drops entries that left the set, stopping their resource faults.
fn retire(gone: Vec<(Entry, Exit)>) {
    for (entry, exit) in gone {
        entry.log_exit(exit);
    }
}
