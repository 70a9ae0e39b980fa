//! What the toxics of one direction of one connection do to the bytes: each chunk read
//! becomes a [`Plan`], the writes to make and the earliest instant of each. Time and chance
//! come in as arguments (`now`, an rng), so the arithmetic is tested without sleeping.
//!
//! Toxics apply in the order they were added. A write never goes before the one ahead of
//! it, so a chunk delayed by jitter holds back the chunks behind it, as a TCP stream must.

use rand::{Rng, RngExt};
use tokio::time::{Duration, Instant};

use super::{Stream, Toxic, ToxicKind};

/// One toxic as it runs on one direction of one connection, with its state.
#[derive(Debug, Clone)]
pub struct ToxicRun {
    /// The [`Toxic::revision`] it runs.
    pub revision: u64,
    /// What it does.
    pub kind: ToxicKind,
    /// Whether this connection drew it (its toxicity); a toxic not drawn does nothing.
    pub enabled: bool,
    /// When this connection first saw it: its open, or when the toxic was added.
    pub since: Instant,
    pacer: Pacer,
    limit: LimitCounter,
    /// `reset_peer`: when its first data came.
    armed: Option<Instant>,
}

/// One write: `data`, not before `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub at: Instant,
    pub data: Vec<u8>,
}

/// What to do with one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In order, at non-decreasing instants.
    pub writes: Vec<Write>,
    /// Close the connection after the writes (`limit_data` reached).
    pub close: bool,
}

/// How a toxic ends a connection when its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// Close both sides (`timeout`).
    Close,
    /// Reset both sides, RST instead of FIN (`reset_peer`).
    Reset,
}

/// Bandwidth pacing: when the bytes written so far would have left a link of the rate.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    free_at: Option<Instant>,
}

/// `limit_data`: the bytes let through so far.
#[derive(Debug, Clone, Default)]
pub struct LimitCounter {
    sent: u64,
}

impl ToxicRun {
    /// `toxic` as first seen at `now` by a connection, which draws it with its toxicity.
    pub fn new<R: Rng + ?Sized>(toxic: &Toxic, now: Instant, rng: &mut R) -> Self {
        Self {
            revision: toxic.revision,
            kind: toxic.kind.clone(),
            enabled: draw(toxic.toxicity, rng),
            since: now,
            pacer: Pacer::default(),
            limit: LimitCounter::default(),
            armed: None,
        }
    }
}

impl Pacer {
    /// Cuts `writes` into pieces of at most 100 ms worth of bytes, each due when a link of
    /// `rate` KB/s would have carried it (the time is paid before a piece, as Toxiproxy
    /// does). An idle link earns no credit: pacing restarts from the next write.
    pub fn pace(&mut self, writes: Vec<Write>, rate: u64) -> Vec<Write> {
        let piece_max = usize::try_from(rate.saturating_mul(100))
            .unwrap_or(usize::MAX)
            .max(1);
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            let mut rest = write.data;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(piece_max));
                let start = self.free_at.map_or(write.at, |free| free.max(write.at));
                let due = start + transfer_time(rest.len(), rate);
                self.free_at = Some(due);
                out.push(Write {
                    at: due,
                    data: rest,
                });
                rest = tail;
            }
        }
        out
    }
}

impl LimitCounter {
    /// How many of `len` more bytes may pass under `limit`, and whether the limit is then
    /// reached (the connection closes).
    pub fn admit(&mut self, len: usize, limit: u64) -> (usize, bool) {
        let left = limit.saturating_sub(self.sent);
        let pass = u64::try_from(len).unwrap_or(u64::MAX).min(left);
        self.sent += pass;
        (usize::try_from(pass).unwrap_or(len), self.sent >= limit)
    }
}

/// Whether a connection gets a toxic of `toxicity` (0 to 1).
pub fn draw<R: Rng + ?Sized>(toxicity: f64, rng: &mut R) -> bool {
    toxicity >= 1.0 || (toxicity > 0.0 && rng.random::<f64>() < toxicity)
}

/// `latency` ms ± up to `jitter` ms, never below zero.
pub fn latency_delay<R: Rng + ?Sized>(latency: u64, jitter: u64, rng: &mut R) -> Duration {
    let ms = if jitter == 0 {
        latency
    } else {
        let swing = rng.random_range(0..=jitter.saturating_mul(2));
        (latency + swing).saturating_sub(jitter)
    };
    Duration::from_millis(ms)
}

/// The time `bytes` take at `rate` KB/s (1 KB/s = one byte per millisecond).
pub fn transfer_time(bytes: usize, rate: u64) -> Duration {
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    Duration::from_nanos(bytes.saturating_mul(1_000_000) / rate.max(1))
}

/// Piece sizes for `len` bytes: each `average` ± `variation` (at least 1), the last one
/// whatever is left. Toxiproxy halves recursively instead; the sizes have the same range.
pub fn slice_sizes<R: Rng + ?Sized>(
    len: usize,
    average: u64,
    variation: u64,
    rng: &mut R,
) -> Vec<usize> {
    let average = usize::try_from(average).unwrap_or(usize::MAX).max(1);
    let variation = usize::try_from(variation).unwrap_or(usize::MAX);
    let low = average.saturating_sub(variation).max(1);
    let high = average.saturating_add(variation).max(low);
    let mut sizes = Vec::new();
    let mut left = len;
    while left > 0 {
        let size = rng.random_range(low..=high).min(left);
        sizes.push(size);
        left -= size;
    }
    sizes
}

/// Brings `runs` in line with the proxy's `toxics` for `stream`: a toxic seen before keeps
/// its state, a new one (or a new revision) is drawn now, a removed one goes.
pub fn sync<R: Rng + ?Sized>(
    runs: &mut Vec<ToxicRun>,
    toxics: &[Toxic],
    stream: Stream,
    now: Instant,
    rng: &mut R,
) {
    let mut old = std::mem::take(runs);
    for toxic in toxics.iter().filter(|t| t.stream == stream) {
        match old.iter().position(|r| r.revision == toxic.revision) {
            Some(i) => runs.push(old.swap_remove(i)),
            None => runs.push(ToxicRun::new(toxic, now, rng)),
        }
    }
}

/// What the enabled `runs` do to `data`, read at `arrived` and planned at `now`.
pub fn plan<R: Rng + ?Sized>(
    runs: &mut [ToxicRun],
    data: Vec<u8>,
    arrived: Instant,
    now: Instant,
    rng: &mut R,
) -> Plan {
    let mut writes = vec![Write { at: now, data }];
    let mut close = false;
    for run in runs.iter_mut().filter(|r| r.enabled) {
        match run.kind {
            ToxicKind::Noop | ToxicKind::SlowClose { .. } => {}
            ToxicKind::Latency { latency, jitter } => {
                // As in Toxiproxy, the delay counts from when the chunk was read.
                let due = arrived + latency_delay(latency, jitter, rng);
                if let Some(first) = writes.first() {
                    let shift = due.saturating_duration_since(first.at);
                    for write in &mut writes {
                        write.at += shift;
                    }
                }
            }
            ToxicKind::Bandwidth { rate } => {
                if rate > 0 {
                    writes = run.pacer.pace(writes, rate);
                }
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                writes = slice(writes, average_size, size_variation, delay, rng);
            }
            ToxicKind::LimitData { bytes } => {
                let mut kept = Vec::with_capacity(writes.len());
                for mut write in writes {
                    let (pass, reached) = run.limit.admit(write.data.len(), bytes);
                    write.data.truncate(pass);
                    if pass > 0 {
                        kept.push(write);
                    }
                    if reached {
                        close = true;
                        break;
                    }
                }
                writes = kept;
            }
            ToxicKind::Timeout { .. } => writes.clear(),
            ToxicKind::ResetPeer { .. } => {
                if !writes.is_empty() {
                    run.armed.get_or_insert(now);
                }
                writes.clear();
            }
        }
    }
    Plan { writes, close }
}

/// When an enabled toxic ends the connection, and how: `timeout` counts from when the
/// connection saw it, `reset_peer` from its first data.
pub fn deadline(runs: &[ToxicRun]) -> Option<(Instant, Abort)> {
    runs.iter()
        .filter(|r| r.enabled)
        .filter_map(|r| match r.kind {
            ToxicKind::Timeout { timeout } if timeout > 0 => {
                Some((r.since + Duration::from_millis(timeout), Abort::Close))
            }
            ToxicKind::ResetPeer { timeout } => r
                .armed
                .map(|at| (at + Duration::from_millis(timeout), Abort::Reset)),
            _ => None,
        })
        .min_by_key(|(at, _)| *at)
}

/// How long the close of this direction waits after its source closed (`slow_close`).
pub fn close_delay(runs: &[ToxicRun]) -> Duration {
    runs.iter()
        .filter(|r| r.enabled)
        .filter_map(|r| match r.kind {
            ToxicKind::SlowClose { delay } => Some(Duration::from_millis(delay)),
            _ => None,
        })
        .max()
        .unwrap_or_default()
}

/// `slicer`: each write cut in pieces, `delay` µs after each piece (as Toxiproxy sleeps
/// after each), so the next write waits too.
fn slice<R: Rng + ?Sized>(
    writes: Vec<Write>,
    average: u64,
    variation: u64,
    delay: u64,
    rng: &mut R,
) -> Vec<Write> {
    let gap = Duration::from_micros(delay);
    let mut out = Vec::with_capacity(writes.len());
    let mut clock: Option<Instant> = None;
    for write in writes {
        let mut at = clock.map_or(write.at, |c| c.max(write.at));
        let mut rest = write.data;
        for size in slice_sizes(rest.len(), average, variation, rng) {
            let tail = rest.split_off(size);
            out.push(Write { at, data: rest });
            rest = tail;
            at += gap;
        }
        clock = Some(at);
    }
    out
}
