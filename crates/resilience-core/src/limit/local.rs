//! The in-process rate-limit store: one replica's keys, bounded in number.
//!
//! Keys are spread over [`SHARDS`] mutex-guarded maps by a randomly seeded hash, so
//! concurrent callers rarely contend and a caller cannot aim its keys at one shard. Each lock
//! is held for one map lookup, one [`decide`] and one write; the store is synchronous, so no
//! lock is ever held across an await. A key whose bucket is full again (`tat <= now`) carries
//! no information: when a shard is full such keys are dropped first, and if it is still full
//! the new key is refused and counted in [`LocalLimiter::overflows`], so a caller with many
//! identities cannot grow memory without bound.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use super::gcra::{Charge, Decision, Quota, decide};
use crate::clock::SharedClock;

/// The number of shards (fewer when the capacity is smaller).
pub const SHARDS: usize = 16;

/// What a new key is told to wait when the store is full.
pub const OVERFLOW_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The in-process keyed store of GCRA states; see the module documentation.
pub struct LocalLimiter {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    hasher: RandomState,
    clock: SharedClock,
    overflows: AtomicU64,
}

/// One shard's keys and a lower bound on their `tat`s, so a sweep that would drop nothing is
/// skipped: a full shard of live keys costs one comparison per refused key, not a scan.
#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64>,
    earliest_tat: u64,
}

impl LocalLimiter {
    /// A store of at most `capacity` keys (0 counts as 1) on `clock`'s wall time.
    pub fn new(capacity: usize, clock: SharedClock) -> Self {
        let capacity = capacity.max(1);
        let shards = SHARDS.min(capacity);
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_capacity: capacity / shards,
            hasher: RandomState::new(),
            clock,
            overflows: AtomicU64::new(0),
        }
    }

    /// Charges `cost` units of `quota` to `key` now (see [`decide`]). A new key that finds
    /// its shard full of live keys is refused, with `retry_after` [`OVERFLOW_RETRY_AFTER`].
    pub fn check(&self, key: &str, quota: &Quota, cost: u32, mode: Charge) -> Decision {
        let now = now_micros(&self.clock);
        let mut shard = self.shard(key);
        let verdict = decide(quota, shard.tats.get(key).copied(), now, cost, mode);
        let Some(new_tat) = verdict.new_tat else {
            return verdict.decision;
        };
        if let Some(tat) = shard.tats.get_mut(key) {
            *tat = new_tat;
            return verdict.decision;
        }
        if shard.tats.len() >= self.shard_capacity {
            shard.sweep(now);
        }
        if shard.tats.len() >= self.shard_capacity {
            drop(shard);
            self.overflows.fetch_add(1, Ordering::Relaxed);
            return overflow(quota);
        }
        shard.insert(key, new_tat);
        verdict.decision
    }

    /// New keys refused because the store was full, since creation.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Keys held now (those with a full bucket included until a sweep drops them).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store holds.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let hash = self.hasher.hash_one(key);
        let index = usize::try_from(hash % self.shards.len() as u64).unwrap_or(0);
        lock(&self.shards[index])
    }
}

impl Shard {
    /// Drops the keys whose bucket is full again, unless none can be.
    fn sweep(&mut self, now: u64) {
        if self.earliest_tat > now {
            return;
        }
        self.tats.retain(|_, tat| *tat > now);
        self.earliest_tat = self.tats.values().copied().min().unwrap_or(u64::MAX);
    }

    fn insert(&mut self, key: &str, tat: u64) {
        if self.tats.is_empty() {
            self.earliest_tat = tat;
        }
        // A stored tat only ever grows, so the minimum moves only on insertion.
        self.earliest_tat = self.earliest_tat.min(tat);
        self.tats.insert(key.to_owned(), tat);
    }
}

/// A shard's map is consistent after every statement, so a poisoned lock is still usable.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The clock's wall time in µs since the Unix epoch (0 before it).
pub(crate) fn now_micros(clock: &SharedClock) -> u64 {
    clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The refusal of a key that found no room.
fn overflow(quota: &Quota) -> Decision {
    Decision {
        allowed: false,
        limit: quota.limit(),
        remaining: 0,
        reset_after: OVERFLOW_RETRY_AFTER,
        retry_after: Some(OVERFLOW_RETRY_AFTER),
    }
}

impl fmt::Debug for LocalLimiter {
    /// Sizes only: the keys themselves identify callers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("overflows", &self.overflows())
            .finish_non_exhaustive()
    }
}
