//! A rolling time window of fixed-size buckets, shared by the breaker's rate thresholds and
//! the retry budget.
//!
//! The window covers `buckets × bucket_len`; a bucket is reused once its epoch has passed out
//! of the window, so recording and summing are O(buckets) with no allocation after creation.

use std::time::{Duration, Instant};

/// The most buckets a window has, whatever it is asked for: every sum walks them all.
pub(crate) const MAX_BUCKETS: u32 = 1000;

/// What one bucket counts; summed over the live buckets.
pub(crate) trait BucketValue: Default + Copy {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: &Self);
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot<T> {
    epoch: u64,
    value: T,
}

/// A ring of buckets keyed by epoch (time since `origin` divided by the bucket length).
#[derive(Debug, Clone)]
pub(crate) struct RollingWindow<T> {
    origin: Instant,
    bucket_nanos: u64,
    slots: Box<[Slot<T>]>,
}

impl<T: BucketValue> RollingWindow<T> {
    /// A window of `length` split into `buckets` buckets (at least one), starting at `origin`.
    pub(crate) fn new(origin: Instant, length: Duration, buckets: u32) -> Self {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let nanos = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX);
        let bucket_nanos = (nanos / u64::from(buckets)).max(1);
        // Epochs start at 1 so that a fresh slot (epoch 0) is never mistaken for a live one.
        let slots = vec![Slot::default(); buckets as usize].into_boxed_slice();
        Self {
            origin,
            bucket_nanos,
            slots,
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let nanos = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        nanos / self.bucket_nanos + 1
    }

    /// Updates the bucket that `now` falls in.
    pub(crate) fn add(&mut self, now: Instant, update: impl FnOnce(&mut T)) {
        let epoch = self.epoch(now);
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % len) as usize];
        if slot.epoch != epoch {
            *slot = Slot {
                epoch,
                value: T::default(),
            };
        }
        update(&mut slot.value);
    }

    /// The sum of the buckets still inside the window at `now`.
    pub(crate) fn sum(&self, now: Instant) -> T {
        let epoch = self.epoch(now);
        let len = self.slots.len() as u64;
        let oldest = epoch.saturating_sub(len - 1);
        let mut total = T::default();
        for slot in self.slots.iter() {
            if slot.epoch >= oldest && slot.epoch <= epoch && slot.epoch != 0 {
                total.merge(&slot.value);
            }
        }
        total
    }

    /// Forgets everything recorded.
    pub(crate) fn clear(&mut self) {
        for slot in self.slots.iter_mut() {
            *slot = Slot::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, Copy, PartialEq)]
    struct Count(u32);

    impl BucketValue for Count {
        fn merge(&mut self, other: &Self) {
            self.0 += other.0;
        }
    }

    fn window() -> (Instant, RollingWindow<Count>) {
        let t0 = Instant::now();
        (t0, RollingWindow::new(t0, Duration::from_secs(10), 10))
    }

    #[test]
    fn sums_within_the_window() {
        let (t0, mut w) = window();
        for s in 0..10 {
            w.add(t0 + Duration::from_secs(s), |c| c.0 += 1);
        }
        assert_eq!(w.sum(t0 + Duration::from_millis(9_999)), Count(10));
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let (t0, mut w) = window();
        w.add(t0, |c| c.0 += 5);
        w.add(t0 + Duration::from_secs(5), |c| c.0 += 1);
        assert_eq!(w.sum(t0 + Duration::from_secs(9)), Count(6));
        assert_eq!(w.sum(t0 + Duration::from_secs(10)), Count(1));
        assert_eq!(w.sum(t0 + Duration::from_secs(15)), Count(0));
    }

    #[test]
    fn a_reused_slot_starts_from_zero() {
        let (t0, mut w) = window();
        w.add(t0, |c| c.0 += 7);
        w.add(t0 + Duration::from_secs(10), |c| c.0 += 1);
        assert_eq!(w.sum(t0 + Duration::from_secs(10)), Count(1));
    }

    #[test]
    fn clear_forgets_everything() {
        let (t0, mut w) = window();
        w.add(t0, |c| c.0 += 3);
        w.clear();
        assert_eq!(w.sum(t0), Count(0));
    }
}
