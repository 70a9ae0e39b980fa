//! The pass rules, pure: percentiles, the well-behaved client's bar, how a held connection
//! ended, and memory growth.

use std::time::Duration;

/// The well-behaved client must keep at least this success rate, in %.
pub const MIN_SUCCESS_PCT: f64 = 99.0;
/// The latency bar is never below this, whatever the idle p99.
pub const MIN_LATENCY_BAR: Duration = Duration::from_millis(50);
/// RSS after an attack may exceed its baseline by this fraction…
pub const RSS_RETURN_FRACTION: f64 = 0.10;
/// …or by this many bytes, whichever is larger.
pub const RSS_RETURN_BYTES: u64 = 8 * 1024 * 1024;
/// Oversized identifiers may grow the target's RSS (and Redis) by less than this.
pub const MAX_GROWTH_BYTES: u64 = 20 * 1024 * 1024;

/// The `q`-th percentile (0–100) of `samples`, by nearest rank; `None` when empty.
pub fn percentile(samples: &[Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let q = q.clamp(0.0, 100.0);
    // Nearest rank: ceil(q/100 × n), 1-based, at least 1.
    let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0);
    let index = (rank as usize).min(sorted.len()) - 1;
    sorted.get(index).copied()
}

/// The well-behaved client's latency bar under attack: max(2 × its idle p99, 50 ms).
pub fn latency_bar(idle_p99: Duration) -> Duration {
    (idle_p99 * 2).max(MIN_LATENCY_BAR)
}

/// What the well-behaved client saw during one attack.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClientFigures {
    /// Requests sent.
    pub sent: u64,
    /// Of them, answered 2xx.
    pub ok: u64,
    /// `ok / sent`, in % (100 when nothing was sent).
    pub success_pct: f64,
    /// Median latency of all requests (failures count with the time they took), in ms.
    pub p50_ms: f64,
    /// 99th percentile latency, in ms.
    pub p99_ms: f64,
}

impl ClientFigures {
    /// Figures from each request's (success, latency).
    pub fn from_samples(samples: &[(bool, Duration)]) -> Self {
        let sent = samples.len() as u64;
        let ok = samples.iter().filter(|(ok, _)| *ok).count() as u64;
        let latencies: Vec<Duration> = samples.iter().map(|(_, latency)| *latency).collect();
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        Self {
            sent,
            ok,
            success_pct: if sent == 0 {
                100.0
            } else {
                ok as f64 * 100.0 / sent as f64
            },
            p50_ms: ms(percentile(&latencies, 50.0)),
            p99_ms: ms(percentile(&latencies, 99.0)),
        }
    }

    /// Why the client was not healthy: success below [`MIN_SUCCESS_PCT`], or, when a bar is
    /// given, p99 above it. Empty when healthy.
    pub fn problems(&self, bar: Option<Duration>) -> Vec<String> {
        let mut problems = Vec::new();
        if self.sent == 0 {
            problems.push("the well-behaved client sent nothing".to_owned());
        }
        if self.success_pct < MIN_SUCCESS_PCT {
            problems.push(format!(
                "well-behaved client success {:.2} % < {MIN_SUCCESS_PCT} %",
                self.success_pct
            ));
        }
        if let Some(bar) = bar {
            let bar_ms = bar.as_secs_f64() * 1000.0;
            if self.p99_ms > bar_ms {
                problems.push(format!(
                    "well-behaved client p99 {:.1} ms > bar {bar_ms:.1} ms",
                    self.p99_ms
                ));
            }
        }
        problems
    }
}

/// How one attacking connection (or stream) ended, seen from the attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server answered with this status after this long.
    Answered(u16, Duration),
    /// The server closed (or reset) the connection or stream after this long.
    Closed(Duration),
    /// Still open when the attack gave up waiting.
    StillOpen,
    /// Could not be set up at all (connect refused or timed out, stream never opened), or
    /// opened too late to be judged before the attack ended.
    NotOpened,
}

/// The tally of [`Ending`]s against a time limit and the statuses that count as a refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndingTally {
    /// Ended in time with an accepted status or a close.
    pub ended_in_time: u64,
    /// Answered with an accepted status, among `ended_in_time`.
    pub answered: u64,
    /// Closed without an answer, among `ended_in_time`.
    pub closed: u64,
    /// Ended, but after the limit.
    pub late: u64,
    /// Answered with a status that is not accepted (e.g. 413 for a stalled body).
    pub wrong_status: u64,
    /// Never ended while the attack watched.
    pub still_open: u64,
    /// Never opened.
    pub not_opened: u64,
    /// The slowest end, in ms.
    pub slowest_end_ms: u64,
}

impl EndingTally {
    /// Tallies `endings`: an ending counts as in time when it came within `limit` and its
    /// status, if any, is in `accepted`.
    pub fn of(endings: &[Ending], limit: Duration, accepted: &[u16]) -> Self {
        let mut tally = Self::default();
        for ending in endings {
            let after = match *ending {
                Ending::Answered(status, after) => {
                    if !accepted.contains(&status) {
                        tally.wrong_status += 1;
                        continue;
                    }
                    after
                }
                Ending::Closed(after) => after,
                Ending::StillOpen => {
                    tally.still_open += 1;
                    continue;
                }
                Ending::NotOpened => {
                    tally.not_opened += 1;
                    continue;
                }
            };
            let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
            tally.slowest_end_ms = tally.slowest_end_ms.max(ms);
            if after > limit {
                tally.late += 1;
            } else {
                tally.ended_in_time += 1;
                if matches!(ending, Ending::Answered(..)) {
                    tally.answered += 1;
                } else {
                    tally.closed += 1;
                }
            }
        }
        tally
    }

    /// Why this tally fails: any late, wrong-status or still-open ending. Connections the
    /// server would not open are the server's defence, not a failure.
    pub fn problems(&self, what: &str, limit: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        let secs = limit.as_secs_f64();
        if self.late > 0 {
            problems.push(format!("{} {what} ended after {secs:.1} s", self.late));
        }
        if self.wrong_status > 0 {
            problems.push(format!(
                "{} {what} got a status other than the expected refusal",
                self.wrong_status
            ));
        }
        if self.still_open > 0 {
            problems.push(format!(
                "{} {what} still open after {secs:.1} s",
                self.still_open
            ));
        }
        problems
    }
}

/// HTTP/2: a server may hold streams beyond its `SETTINGS_MAX_CONCURRENT_STREAMS` unread
/// (queued), and a client cannot tell from its side when the server admitted one. When
/// streams did end in time (the server enforces its deadline on the ones it admitted), the
/// ones still open at the end are counted as queued, returned, and no longer failed; when
/// none ended in time, they stay failures (slow streams held as long as the client likes).
pub fn queued_streams(tally: &mut EndingTally) -> u64 {
    if tally.ended_in_time == 0 {
        return 0;
    }
    std::mem::take(&mut tally.still_open)
}

/// True when `after` is within [`RSS_RETURN_FRACTION`] or [`RSS_RETURN_BYTES`] (whichever
/// is larger) of `baseline`.
pub fn rss_returned(baseline: u64, after: u64) -> bool {
    let fraction = (baseline as f64 * RSS_RETURN_FRACTION) as u64;
    after <= baseline.saturating_add(fraction.max(RSS_RETURN_BYTES))
}

/// True when memory grew from `before` to `after` by less than [`MAX_GROWTH_BYTES`].
pub fn grew_less_than_limit(before: u64, after: u64) -> bool {
    after.saturating_sub(before) < MAX_GROWTH_BYTES
}

/// Bytes as MiB with one decimal, for the report.
pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}
