//! Time as an injected dependency.
//!
//! Every state machine in this crate takes its instants from a [`Clock`] (or as explicit
//! `now` arguments), never from `Instant::now()` directly, so tests drive time by hand with
//! [`ManualClock`] and never sleep.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of monotonic instants and of wall-clock time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// The current wall-clock time, for records that leave the process (logs, database).
    fn wall(&self) -> SystemTime;

    /// The wall-clock time that corresponds to the monotonic instant `at`.
    fn wall_at(&self, at: Instant) -> SystemTime {
        let now = self.now();
        let wall = self.wall();
        if at <= now {
            wall.checked_sub(now - at).unwrap_or(UNIX_EPOCH)
        } else {
            wall + (at - now)
        }
    }
}

/// A clock shared between the owners of state machines.
pub type SharedClock = Arc<dyn Clock>;

/// Milliseconds since the Unix epoch (0 before it), the form timestamps take in JSON.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The operating system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// A [`SharedClock`] backed by the system clocks.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to; for tests.
///
/// Both of its readings start at the moment it was created and move together.
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    origin_wall: SystemTime,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            origin_wall: SystemTime::now(),
            offset_nanos: AtomicU64::new(0),
        })
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// How far the clock has moved since it was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.origin_wall + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now() - t0, Duration::from_millis(1500));
    }

    #[test]
    fn wall_and_monotonic_move_together() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        let w0 = clock.wall();
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            clock.wall().duration_since(w0).ok(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(clock.wall_at(t0), w0);
        assert_eq!(
            clock.wall_at(t0 + Duration::from_secs(12)),
            w0 + Duration::from_secs(12)
        );
    }

    #[test]
    fn unix_millis_of_epoch_is_zero() {
        assert_eq!(unix_millis(UNIX_EPOCH), 0);
        assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
    }
}
