//! Resource faults: `cpu_burn` spins threads and `memory` holds touched memory, both for as
//! long as their [`Resource`] lives. Dropping it (the fault is removed, expires, is cleared,
//! or the whole set goes away) stops the threads and frees the memory.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use llm_api::FieldError;
use llm_api::fault::FaultKind;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
/// Work between two looks at the stop flag: a few microseconds, so a burn stops at once.
const SPINS_PER_CHECK: u32 = 1_000;

/// What the resource faults of one set use now, shared with their threads.
#[derive(Debug, Default)]
pub(crate) struct ResourceCounters {
    /// Burning threads started and not yet returned.
    pub(crate) burning_threads: AtomicUsize,
    /// Bytes held by memory faults.
    pub(crate) held_bytes: AtomicU64,
}

/// A running resource fault; dropping it stops it.
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "held only to be dropped: the Drop of each variant stops it"
)]
pub(crate) enum Resource {
    /// Spinning threads.
    CpuBurn(CpuBurn),
    /// Held memory.
    Memory(HeldMemory),
}

impl Resource {
    /// Starts what `kind` asks for, if it is a resource fault; `None` for every other kind.
    /// Fails, naming the field, when a thread cannot be spawned or the memory allocated.
    pub(crate) fn start(
        kind: &FaultKind,
        counters: &Arc<ResourceCounters>,
    ) -> Result<Option<Self>, FieldError> {
        Ok(match kind {
            FaultKind::CpuBurn { threads } => {
                Some(Self::CpuBurn(CpuBurn::start(*threads, counters)?))
            }
            FaultKind::Memory { mb } => Some(Self::Memory(HeldMemory::allocate(*mb, counters)?)),
            _ => None,
        })
    }
}

/// Threads spinning until the value drops. They are detached, not joined: each one sees the
/// stop flag within microseconds and returns, so dropping never blocks an async worker.
#[derive(Debug)]
pub(crate) struct CpuBurn {
    stop: Arc<AtomicBool>,
}

impl CpuBurn {
    fn start(threads: u32, counters: &Arc<ResourceCounters>) -> Result<Self, FieldError> {
        // Built first, so that a failed spawn drops it and stops the threads already started.
        let burn = Self {
            stop: Arc::new(AtomicBool::new(false)),
        };
        for n in 0..threads {
            // Counted before the spawn, so the count is right as soon as `add` returns.
            counters.burning_threads.fetch_add(1, Ordering::SeqCst);
            let stop = Arc::clone(&burn.stop);
            let owned = Arc::clone(counters);
            let spawned = thread::Builder::new()
                .name(format!("cpu-burn-{n}"))
                .spawn(move || {
                    let _exit = ThreadExit(owned);
                    spin(&stop);
                });
            if let Err(e) = spawned {
                counters.burning_threads.fetch_sub(1, Ordering::SeqCst);
                return Err(FieldError::new(
                    "threads",
                    format!("could not start burning thread {n}: {e}"),
                ));
            }
        }
        Ok(burn)
    }
}

impl Drop for CpuBurn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Uncounts a burning thread when it returns, even by unwinding.
struct ThreadExit(Arc<ResourceCounters>);

impl Drop for ThreadExit {
    fn drop(&mut self) {
        self.0.burning_threads.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spin(stop: &AtomicBool) {
    let mut x: u64 = 1;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..SPINS_PER_CHECK {
            x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    black_box(x);
}

/// `MemAvailable` from `/proc/meminfo`, in bytes; `None` where there is no such file.
fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// `mb` MiB, every page written so the memory is resident, not just reserved.
#[derive(Debug)]
pub(crate) struct HeldMemory {
    bytes: Vec<u8>,
    counters: Arc<ResourceCounters>,
}

impl HeldMemory {
    fn allocate(mb: u64, counters: &Arc<ResourceCounters>) -> Result<Self, FieldError> {
        let too_big = || FieldError::new("mb", format!("{mb} MiB does not fit in memory"));
        let len = usize::try_from(mb)
            .ok()
            .and_then(|mb| mb.checked_mul(MIB))
            .ok_or_else(too_big)?;
        // Linux overcommits: a reservation "succeeds" and the page writes then summon the
        // OOM killer, for this process or a neighbour. Refuse more than half of what the
        // machine has available, counting what other memory faults already hold.
        if let Some(available) = available_bytes() {
            let held = counters.held_bytes.load(Ordering::SeqCst);
            let allowed = (available / 2).saturating_sub(held);
            if len as u64 > allowed {
                return Err(FieldError::new(
                    "mb",
                    format!(
                        "{mb} MiB is more than half of the memory available ({} MiB may be held)",
                        allowed / MIB as u64
                    ),
                ));
            }
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|e| FieldError::new("mb", format!("cannot allocate {mb} MiB: {e}")))?;
        // Page-sized copies: a memcpy each, fast even in a debug build, and every page touched.
        let page = [0xA5_u8; PAGE];
        while bytes.len() < len {
            let n = (len - bytes.len()).min(PAGE);
            bytes.extend_from_slice(&page[..n]);
        }
        let bytes = black_box(bytes);
        counters
            .held_bytes
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(Self {
            bytes,
            counters: Arc::clone(counters),
        })
    }
}

impl Drop for HeldMemory {
    fn drop(&mut self) {
        self.counters
            .held_bytes
            .fetch_sub(self.bytes.len() as u64, Ordering::SeqCst);
    }
}
