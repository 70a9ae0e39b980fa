//! [`LocalLimiter`]: keys on the injected clock, bounded memory, concurrent callers.

use std::sync::Arc;
use std::time::Duration;

use crate::ManualClock;
use crate::limit::{Charge, LocalLimiter, OVERFLOW_RETRY_AFTER, Quota};

fn quota(burst: u32) -> Quota {
    Quota::per_minute(60, burst).unwrap()
}

#[test]
fn keys_are_limited_separately_and_refill_on_the_clock() {
    let clock = ManualClock::new();
    let limiter = LocalLimiter::new(100, clock.clone());
    let q = quota(2);
    assert!(limiter.check("a", &q, 2, Charge::Admit).allowed);
    assert!(!limiter.check("a", &q, 1, Charge::Admit).allowed);
    assert!(limiter.check("b", &q, 1, Charge::Admit).allowed);
    clock.advance(Duration::from_secs(1));
    let back = limiter.check("a", &q, 1, Charge::Admit);
    assert!(back.allowed);
    assert_eq!(back.remaining, 0);
    assert_eq!(limiter.len(), 2);
}

#[test]
fn peeks_and_refusals_store_nothing() {
    let clock = ManualClock::new();
    let limiter = LocalLimiter::new(100, clock);
    let q = quota(2);
    assert!(limiter.check("peek", &q, 0, Charge::Admit).allowed);
    assert!(!limiter.check("too-big", &q, 3, Charge::Admit).allowed);
    assert!(limiter.is_empty());
}

#[test]
fn force_debt_blocks_peeks_until_it_drains() {
    let clock = ManualClock::new();
    let limiter = LocalLimiter::new(100, clock.clone());
    let q = quota(5);
    assert!(!limiter.check("tokens", &q, 8, Charge::Force).allowed);
    assert!(!limiter.check("tokens", &q, 0, Charge::Admit).allowed);
    clock.advance(Duration::from_secs(3));
    assert!(limiter.check("tokens", &q, 0, Charge::Admit).allowed);
}

#[test]
fn a_full_store_refuses_new_keys_and_counts_them() {
    let clock = ManualClock::new();
    let limiter = LocalLimiter::new(16, clock.clone());
    assert_eq!(limiter.capacity(), 16);
    let q = quota(5);
    let mut refused = 0;
    for i in 0..200 {
        let d = limiter.check(&format!("caller-{i}"), &q, 1, Charge::Admit);
        if !d.allowed {
            refused += 1;
            assert_eq!(d.retry_after, Some(OVERFLOW_RETRY_AFTER));
            assert_eq!(d.remaining, 0);
        }
    }
    assert!(limiter.len() <= 16, "{}", limiter.len());
    assert!(refused >= 184, "{refused}");
    assert_eq!(limiter.overflows(), refused);
}

#[test]
fn known_keys_keep_working_when_the_store_is_full() {
    let clock = ManualClock::new();
    let limiter = LocalLimiter::new(1, clock);
    let q = quota(5);
    assert!(limiter.check("first", &q, 1, Charge::Admit).allowed);
    assert!(!limiter.check("second", &q, 1, Charge::Admit).allowed);
    let again = limiter.check("first", &q, 1, Charge::Admit);
    assert!(again.allowed);
    assert_eq!(again.remaining, 3);
    assert_eq!(limiter.overflows(), 1);
}

#[test]
fn keys_with_a_full_bucket_make_room() {
    let clock = ManualClock::new();
    let limiter = LocalLimiter::new(1, clock.clone());
    let q = quota(5);
    assert!(limiter.check("old", &q, 1, Charge::Admit).allowed);
    clock.advance(Duration::from_millis(500));
    assert!(
        !limiter.check("new", &q, 1, Charge::Admit).allowed,
        "old is still refilling"
    );
    // One unit refills in a second: the old bucket is full again and carries nothing.
    clock.advance(Duration::from_millis(500));
    assert!(limiter.check("new", &q, 1, Charge::Admit).allowed);
    assert_eq!(limiter.len(), 1);
    assert_eq!(limiter.overflows(), 1);
}

#[test]
fn zero_capacity_still_holds_one_key() {
    let limiter = LocalLimiter::new(0, ManualClock::new());
    assert_eq!(limiter.capacity(), 1);
    assert!(limiter.check("only", &quota(1), 1, Charge::Admit).allowed);
}

#[test]
fn concurrent_callers_on_one_key_share_its_burst() {
    let limiter = Arc::new(LocalLimiter::new(1000, ManualClock::new()));
    let q = quota(100);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limiter = limiter.clone();
            std::thread::spawn(move || {
                (0..50)
                    .filter(|_| limiter.check("shared", &q, 1, Charge::Admit).allowed)
                    .count()
            })
        })
        .collect();
    let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(allowed, 100);
}

#[test]
fn debug_shows_sizes_not_keys() {
    let limiter = LocalLimiter::new(10, ManualClock::new());
    limiter.check("secret-caller", &quota(1), 1, Charge::Admit);
    let debug = format!("{limiter:?}");
    assert!(!debug.contains("secret-caller"), "{debug}");
    assert!(debug.contains("len: 1"), "{debug}");
}
