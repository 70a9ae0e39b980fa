//! The in-memory response cache behind the cache tier.
//!
//! Two kinds of entries live here. *Learned* entries are answers the live tiers gave
//! earlier: they expire `ttl` after they were stored (measured on the injected
//! [`SharedClock`], so tests move time by hand) and at most `capacity` of them are kept;
//! when full, expired entries go first, then the least recently used. A cache given a byte
//! bound ([`ResponseCache::with_byte_limit`]) also keeps its learned entries' estimated
//! bytes under `max_bytes` the same way, and refuses an entry above `max_entry_bytes`. *Seeded* entries are
//! common answers loaded at start (see [`SeedFile`](super::SeedFile)): they never expire,
//! are never evicted and do not count against the capacity.
//!
//! A lookup tries the key's exact model (learned, then seeded) and then the model-agnostic
//! key (learned, then seeded). One short mutex section per operation; nothing awaits while
//! holding it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::key::CacheKey;
use super::seed::{SeedEntry, SeedFile};
use crate::clock::SharedClock;

/// Default lifetime of a learned entry: one hour.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Default maximum number of learned entries: 1,000.
pub const DEFAULT_CACHE_CAPACITY: usize = 1_000;

/// What one learned entry costs besides its key's text and its value's weight: the key's
/// `Arc` and the three map slots that index it (an estimate, on the high side).
pub const ENTRY_OVERHEAD_BYTES: usize = 192;

/// How many bytes a value takes on the heap, for a cache bounded in bytes.
pub type Weigher<Resp> = Arc<dyn Fn(&Resp) -> usize + Send + Sync>;

/// The response cache: learned answers with a TTL and a size bound, plus seeded answers.
///
/// Shared as `Arc<ResponseCache<Resp>>` between the writer of live answers (such as a
/// [`CacheStore`](super::CacheStore) given to a chain) and the
/// [`CacheProvider`](super::CacheProvider) of the cache tier.
pub struct ResponseCache<Resp> {
    clock: SharedClock,
    ttl: Duration,
    capacity: usize,
    /// Learned entries' bytes at most (`usize::MAX`: no bound).
    max_bytes: usize,
    /// One learned entry's bytes at most (`usize::MAX`: no bound).
    max_entry_bytes: usize,
    /// The weight of a value; `None`: values weigh nothing (only keys count).
    weigh: Option<Weigher<Resp>>,
    state: Mutex<State<Resp>>,
    counters: Counters,
}

/// A point-in-time copy of a [`ResponseCache`]'s counters and sizes, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups that found an answer (learned or seeded).
    pub hits: u64,
    /// The part of `hits` served by seeded entries.
    pub seeded_hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Learned entries stored (including replacements).
    pub inserts: u64,
    /// Learned entries removed to respect the size bound while still fresh.
    pub evictions: u64,
    /// Learned entries removed because their TTL had passed.
    pub expirations: u64,
    /// Learned entries not stored because they alone weighed more than the per-entry bound.
    pub oversized: u64,
    /// Learned entries currently held (some may have expired but not yet been removed).
    pub entries: usize,
    /// The estimated bytes of the learned entries held.
    pub bytes: usize,
    /// The bound of `bytes` (`usize::MAX` when the cache has none).
    pub max_bytes: usize,
    /// Seeded entries (one per prompt variant and model).
    pub seeded: usize,
    /// The maximum number of learned entries.
    pub capacity: usize,
    /// The lifetime of a learned entry, in milliseconds.
    pub ttl_ms: u64,
}

struct State<Resp> {
    learned: HashMap<Arc<CacheKey>, Learned<Resp>>,
    // Every learned entry shares one TTL, so insertion order is also expiry order.
    by_insert: BTreeMap<u64, Arc<CacheKey>>,
    by_use: BTreeMap<u64, Arc<CacheKey>>,
    seeded: HashMap<CacheKey, Resp>,
    next_seq: u64,
    /// The sum of the learned entries' `bytes`.
    bytes: usize,
}

struct Learned<Resp> {
    value: Resp,
    /// `None` when the TTL is too long to be represented: never expires.
    expires_at: Option<Instant>,
    inserted: u64,
    used: u64,
    /// The entry's estimated size.
    bytes: usize,
}

impl<Resp> Learned<Resp> {
    fn is_fresh(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    seeded_hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    oversized: AtomicU64,
}

enum Found<Resp> {
    Learned(Resp),
    Seeded(Resp),
}

impl<Resp> ResponseCache<Resp> {
    /// An empty cache whose learned entries live for `ttl` (as read on `clock`) and number
    /// at most `capacity`. A capacity of 0 stores no learned entries (seeded ones still work).
    pub fn new(clock: SharedClock, ttl: Duration, capacity: usize) -> Self {
        Self {
            clock,
            ttl,
            capacity,
            max_bytes: usize::MAX,
            max_entry_bytes: usize::MAX,
            weigh: None,
            state: Mutex::new(State {
                learned: HashMap::new(),
                by_insert: BTreeMap::new(),
                by_use: BTreeMap::new(),
                seeded: HashMap::new(),
                next_seq: 0,
                bytes: 0,
            }),
            counters: Counters::default(),
        }
    }

    /// An empty cache with [`DEFAULT_CACHE_TTL`] and [`DEFAULT_CACHE_CAPACITY`].
    pub fn with_defaults(clock: SharedClock) -> Self {
        Self::new(clock, DEFAULT_CACHE_TTL, DEFAULT_CACHE_CAPACITY)
    }

    /// The same cache bounded in bytes too: its learned entries take at most `max_bytes`
    /// (least recently used removed first, after the expired ones), and an entry above
    /// `max_entry_bytes` is not stored. An entry weighs its key's text, `weigh(value)` and
    /// [`ENTRY_OVERHEAD_BYTES`]. Seeded entries are not counted (they are fixed at start).
    pub fn with_byte_limit(
        mut self,
        max_bytes: usize,
        max_entry_bytes: usize,
        weigh: impl Fn(&Resp) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.max_bytes = max_bytes;
        self.max_entry_bytes = max_entry_bytes;
        self.weigh = Some(Arc::new(weigh));
        self
    }

    /// The estimated bytes of a learned entry of `value` under `key`.
    fn entry_bytes(&self, key: &CacheKey, value: &Resp) -> usize {
        let key_bytes = key.prompt().len() + key.model().map_or(0, str::len);
        let value_bytes = self.weigh.as_ref().map_or(0, |weigh| weigh(value));
        ENTRY_OVERHEAD_BYTES
            .saturating_add(key_bytes)
            .saturating_add(value_bytes)
    }

    /// The lifetime of a learned entry.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The maximum number of learned entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Stores `value` as a learned answer under `key`, replacing (and re-timing) any
    /// learned entry already there. When full (in entries or in bytes), removes expired
    /// entries first and then the least recently used ones. Ignored for a blank key or a
    /// capacity of 0; an entry above the per-entry byte bound is not stored (and counted as
    /// oversized), an earlier answer under its key stays.
    pub fn insert(&self, key: CacheKey, value: Resp) {
        if key.is_blank() || self.capacity == 0 {
            return;
        }
        let bytes = self.entry_bytes(&key, &value);
        if bytes > self.max_entry_bytes || bytes > self.max_bytes {
            self.add(&self.counters.oversized, 1);
            return;
        }
        let now = self.clock.now();
        let mut state = self.lock();
        state.remove(&key);
        let full = |state: &State<Resp>| {
            state.learned.len() >= self.capacity
                || state.bytes.saturating_add(bytes) > self.max_bytes
        };
        if full(&state) {
            let expired = state.purge_expired(now);
            self.add(&self.counters.expirations, expired);
            while full(&state) && state.evict_lru() {
                self.add(&self.counters.evictions, 1);
            }
        }
        let seq = state.next_seq();
        let key = Arc::new(key);
        state.by_insert.insert(seq, Arc::clone(&key));
        state.by_use.insert(seq, Arc::clone(&key));
        let expires_at = now.checked_add(self.ttl);
        let entry = Learned {
            value,
            expires_at,
            inserted: seq,
            used: seq,
            bytes,
        };
        state.bytes = state.bytes.saturating_add(bytes);
        state.learned.insert(key, entry);
        self.add(&self.counters.inserts, 1);
    }

    /// Whether `key` holds a learned answer stored less than half its TTL ago: a writer of
    /// live answers skips storing it again (the copy, the weighing, the index updates, a
    /// shared store's write) and stores the next answer once half the TTL has passed, so a
    /// key kept in use never expires. Every request answered live would otherwise write the
    /// cache.
    pub fn holds_fresh(&self, key: &CacheKey) -> bool {
        let now = self.clock.now();
        let half = self.ttl / 2;
        self.lock().learned.get(key).is_some_and(|entry| {
            entry
                .expires_at
                .is_none_or(|expires| expires.saturating_duration_since(now) > half)
        })
    }

    /// Stores `value` as a seeded answer under `key`: it never expires and is never evicted.
    /// Replaces an earlier seeded answer for the same key; ignored for a blank key.
    pub fn insert_seeded(&self, key: CacheKey, value: Resp) {
        if key.is_blank() {
            return;
        }
        self.lock().seeded.insert(key, value);
    }

    /// Seeds one answer per prompt variant of every entry of `file`, converting each entry
    /// with `to_response`; returns how many keys were seeded. Call at start-up.
    pub fn seed(&self, file: &SeedFile, to_response: impl Fn(&SeedEntry) -> Resp) -> usize
    where
        Resp: Clone,
    {
        let mut seeded = 0;
        for entry in &file.entries {
            let value = to_response(entry);
            for key in entry.keys() {
                self.insert_seeded(key, value.clone());
                seeded += 1;
            }
        }
        seeded
    }

    /// Reads, validates and seeds the file at `path` (see [`SeedFile::load`]); returns how
    /// many keys were seeded. Blocking file I/O: call at start-up. Fails with
    /// [`crate::Error::InvalidConfig`] naming the path, and then seeds nothing.
    pub fn load_seed_file(
        &self,
        path: impl AsRef<Path>,
        to_response: impl Fn(&SeedEntry) -> Resp,
    ) -> crate::Result<usize>
    where
        Resp: Clone,
    {
        let file = SeedFile::load(path)?;
        Ok(self.seed(&file, to_response))
    }

    /// Removes every learned entry whose TTL has passed; returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let removed = self.lock().purge_expired(now);
        self.add(&self.counters.expirations, removed);
        removed
    }

    /// How many learned entries are held (expired ones included until removed).
    pub fn len(&self) -> usize {
        self.lock().learned.len()
    }

    /// Whether no learned entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters and sizes at this moment.
    pub fn stats(&self) -> CacheStats {
        let (entries, seeded, bytes) = {
            let state = self.lock();
            (state.learned.len(), state.seeded.len(), state.bytes)
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: load(&self.counters.hits),
            seeded_hits: load(&self.counters.seeded_hits),
            misses: load(&self.counters.misses),
            inserts: load(&self.counters.inserts),
            evictions: load(&self.counters.evictions),
            expirations: load(&self.counters.expirations),
            oversized: load(&self.counters.oversized),
            entries,
            bytes,
            max_bytes: self.max_bytes,
            seeded,
            capacity: self.capacity,
            ttl_ms: u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<Resp>> {
        // A panic elsewhere cannot leave the maps half-updated in a way lookups trip over.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

impl<Resp: Clone> ResponseCache<Resp> {
    /// The answer for `key`: the exact model's learned then seeded entry, then the
    /// model-agnostic learned then seeded entry. A learned entry found expired is removed.
    /// Counts a hit or a miss; a blank key always misses.
    pub fn get(&self, key: &CacheKey) -> Option<Resp> {
        let found = if key.is_blank() {
            None
        } else {
            let now = self.clock.now();
            let mut state = self.lock();
            let mut expired = 0;
            let mut found = state.find(key, now, &mut expired);
            if found.is_none()
                && let Some(agnostic) = key.without_model()
            {
                found = state.find(&agnostic, now, &mut expired);
            }
            drop(state);
            self.add(&self.counters.expirations, expired);
            found
        };
        match found {
            Some(Found::Learned(value)) => {
                self.add(&self.counters.hits, 1);
                Some(value)
            }
            Some(Found::Seeded(value)) => {
                self.add(&self.counters.hits, 1);
                self.add(&self.counters.seeded_hits, 1);
                Some(value)
            }
            None => {
                self.add(&self.counters.misses, 1);
                None
            }
        }
    }
}

impl<Resp> std::fmt::Debug for ResponseCache<Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("max_bytes", &self.max_bytes)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<Resp> State<Resp> {
    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn find(&mut self, key: &CacheKey, now: Instant, expired: &mut usize) -> Option<Found<Resp>>
    where
        Resp: Clone,
    {
        let fresh = self.learned.get(key).map(|e| e.is_fresh(now));
        match fresh {
            Some(true) => {
                let seq = self.next_seq();
                if let Some(entry) = self.learned.get_mut(key) {
                    let previous = std::mem::replace(&mut entry.used, seq);
                    let value = entry.value.clone();
                    if let Some(k) = self.by_use.remove(&previous) {
                        self.by_use.insert(seq, k);
                    }
                    return Some(Found::Learned(value));
                }
            }
            Some(false) => {
                self.remove(key);
                *expired += 1;
            }
            None => {}
        }
        self.seeded.get(key).cloned().map(Found::Seeded)
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.learned.remove(key) {
            self.by_insert.remove(&old.inserted);
            self.by_use.remove(&old.used);
            self.bytes = self.bytes.saturating_sub(old.bytes);
        }
    }

    /// Removes expired entries, oldest first; stops at the first fresh one.
    fn purge_expired(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some((_, key)) = self.by_insert.first_key_value() {
            let key = Arc::clone(key);
            if self.learned.get(&*key).is_some_and(|e| e.is_fresh(now)) {
                break;
            }
            self.by_insert.pop_first();
            if let Some(entry) = self.learned.remove(&*key) {
                self.by_use.remove(&entry.used);
                self.bytes = self.bytes.saturating_sub(entry.bytes);
                removed += 1;
            }
        }
        removed
    }

    /// Removes the least recently used learned entry; false when there is none.
    fn evict_lru(&mut self) -> bool {
        let Some((_, key)) = self.by_use.pop_first() else {
            return false;
        };
        self.remove(&key);
        true
    }
}
