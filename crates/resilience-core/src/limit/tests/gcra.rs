//! [`decide`]: burst, refill, the reported numbers, debt, and hostile inputs.

use std::time::Duration;

use crate::limit::{Charge, Decision, Quota, Verdict, decide};

/// 60 per minute: one unit per second.
fn per_second(burst: u32) -> Quota {
    Quota::per_minute(60, burst).unwrap()
}

const SECOND: u64 = 1_000_000;
const START: u64 = 1_700_000_000 * SECOND;

/// Runs `decide` and stores its state, like a store does.
fn spend(quota: &Quota, tat: &mut Option<u64>, now: u64, cost: u32, mode: Charge) -> Decision {
    let Verdict { decision, new_tat } = decide(quota, *tat, now, cost, mode);
    if let Some(new_tat) = new_tat {
        *tat = Some(new_tat);
    }
    decision
}

#[test]
fn quota_rejects_zero_and_names_the_setting() {
    let limit = Quota::per_minute(0, 10).unwrap_err().to_string();
    assert!(limit.contains("rate_limit.limit"), "{limit}");
    let burst = Quota::per_minute(10, 0).unwrap_err().to_string();
    assert!(burst.contains("rate_limit.burst"), "{burst}");
}

#[test]
fn emission_interval_is_a_minute_over_the_limit_and_never_zero() {
    assert_eq!(
        Quota::per_minute(100, 100).unwrap().emission_interval(),
        600_000
    );
    assert_eq!(
        Quota::per_minute(1, 1).unwrap().emission_interval(),
        60 * SECOND
    );
    let huge = Quota::per_minute(u32::MAX, 1).unwrap();
    assert_eq!(huge.emission_interval(), 1);
}

#[test]
fn share_divides_rounding_up_and_never_below_one() {
    let quota = Quota::per_minute(100, 100).unwrap();
    assert_eq!(quota.share(1), quota);
    assert_eq!(quota.share(0), quota);
    let third = quota.share(3);
    assert_eq!((third.limit(), third.burst()), (34, 34));
    let tiny = Quota::per_minute(2, 1).unwrap().share(10);
    assert_eq!((tiny.limit(), tiny.burst()), (1, 1));
}

#[test]
fn a_fresh_key_takes_its_burst_at_once_then_is_refused() {
    let quota = per_second(5);
    let mut tat = None;
    for left in (0..5).rev() {
        let d = spend(&quota, &mut tat, START, 1, Charge::Admit);
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
        assert_eq!(d.limit, 60);
        assert_eq!(d.retry_after, None);
    }
    let before = tat;
    let refused = spend(&quota, &mut tat, START, 1, Charge::Admit);
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    assert_eq!(tat, before, "a refused charge changes nothing");
    assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
}

#[test]
fn refused_admit_writes_nothing() {
    let quota = per_second(1);
    let v = decide(&quota, Some(START + 5 * SECOND), START, 1, Charge::Admit);
    assert!(!v.decision.allowed);
    assert_eq!(v.new_tat, None);
}

#[test]
fn refills_one_unit_per_emission_interval() {
    let quota = per_second(3);
    let mut tat = None;
    for _ in 0..3 {
        assert!(spend(&quota, &mut tat, START, 1, Charge::Admit).allowed);
    }
    let mut now = START;
    for _ in 0..10 {
        assert!(!spend(&quota, &mut tat, now, 1, Charge::Admit).allowed);
        now += SECOND;
        let d = spend(&quota, &mut tat, now, 1, Charge::Admit);
        assert!(d.allowed, "one unit back after T");
        assert_eq!(d.remaining, 0);
    }
    // A long idle refills to the burst, never beyond it.
    now += 3600 * SECOND;
    let peek = spend(&quota, &mut tat, now, 0, Charge::Admit);
    assert_eq!(peek.remaining, 3);
    assert_eq!(peek.reset_after, Duration::ZERO);
}

#[test]
fn reports_remaining_and_reset_after_each_charge() {
    let quota = Quota::per_minute(100, 100).unwrap(); // T = 0.6 s
    let mut tat = None;
    let first = spend(&quota, &mut tat, START, 1, Charge::Admit);
    assert_eq!(first.remaining, 99);
    assert_eq!(first.reset_after, Duration::from_millis(600));
    let ten = spend(&quota, &mut tat, START, 10, Charge::Admit);
    assert_eq!(ten.remaining, 89);
    assert_eq!(ten.reset_after, Duration::from_millis(6600));
    // Half an interval later nothing whole came back, but the reset is nearer.
    let later = spend(&quota, &mut tat, START + 300_000, 0, Charge::Admit);
    assert_eq!(later.remaining, 89);
    assert_eq!(later.reset_after, Duration::from_millis(6300));
}

#[test]
fn retry_after_is_exact_and_rounded_up_to_the_millisecond() {
    let quota = Quota::per_minute(7, 1).unwrap(); // T = 8_571_428 µs
    let mut tat = None;
    assert!(spend(&quota, &mut tat, START, 1, Charge::Admit).allowed);
    let refused = spend(&quota, &mut tat, START, 1, Charge::Admit);
    assert_eq!(refused.retry_after, Some(Duration::from_millis(8572)));
    // Retrying just before that is refused, at it allowed.
    assert!(!spend(&quota, &mut tat, START + 8_571_427, 1, Charge::Admit).allowed);
    assert!(spend(&quota, &mut tat, START + 8_571_428, 1, Charge::Admit).allowed);
}

#[test]
fn retry_after_for_a_larger_cost_waits_for_all_of_it() {
    let quota = per_second(10);
    let mut tat = None;
    assert!(spend(&quota, &mut tat, START, 10, Charge::Admit).allowed);
    let refused = spend(&quota, &mut tat, START, 4, Charge::Admit);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(4)));
    assert!(!spend(&quota, &mut tat, START + 3 * SECOND, 4, Charge::Admit).allowed);
    assert!(spend(&quota, &mut tat, START + 4 * SECOND, 4, Charge::Admit).allowed);
}

#[test]
fn a_cost_above_the_burst_is_never_admitted() {
    let quota = per_second(5);
    let v = decide(&quota, None, START, 6, Charge::Admit);
    assert!(!v.decision.allowed);
    assert_eq!(v.decision.retry_after, None, "None: it can never fit");
    assert_eq!(v.decision.remaining, 5);
    assert_eq!(v.new_tat, None);
}

#[test]
fn force_records_debt_and_peeks_are_refused_until_it_drains() {
    let quota = per_second(5);
    let mut tat = None;
    let over = spend(&quota, &mut tat, START, 8, Charge::Force);
    assert!(!over.allowed, "8 > burst of 5");
    assert_eq!(tat, Some(START + 8 * SECOND), "recorded anyway");
    assert_eq!(over.remaining, 0);
    assert_eq!(over.reset_after, Duration::from_secs(8));
    assert_eq!(
        over.retry_after,
        Some(Duration::from_secs(3)),
        "until out of debt"
    );

    let peek = spend(&quota, &mut tat, START + 2 * SECOND, 0, Charge::Admit);
    assert!(!peek.allowed);
    assert_eq!(peek.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(tat, Some(START + 8 * SECOND), "a peek writes nothing");

    let drained = spend(&quota, &mut tat, START + 3 * SECOND, 0, Charge::Admit);
    assert!(drained.allowed);
    assert_eq!(drained.remaining, 0);
    let one = spend(&quota, &mut tat, START + 4 * SECOND, 1, Charge::Admit);
    assert!(one.allowed);
}

#[test]
fn force_within_the_allowance_is_allowed() {
    let quota = per_second(5);
    let v = decide(&quota, None, START, 2, Charge::Force);
    assert!(v.decision.allowed);
    assert_eq!(v.decision.remaining, 3);
    assert_eq!(v.new_tat, Some(START + 2 * SECOND));
}

#[test]
fn zero_cost_never_writes() {
    let quota = per_second(5);
    for mode in [Charge::Admit, Charge::Force] {
        let v = decide(&quota, Some(START + SECOND), START, 0, mode);
        assert!(v.decision.allowed);
        assert_eq!(v.decision.remaining, 4);
        assert_eq!(v.new_tat, None);
    }
}

#[test]
fn a_clock_stepping_back_never_panics_and_only_looks_busier() {
    let quota = per_second(2);
    let mut tat = None;
    assert!(spend(&quota, &mut tat, START, 2, Charge::Admit).allowed);
    // Ten seconds earlier: the stored tat is 12 s ahead, far past the burst.
    let back = spend(&quota, &mut tat, START - 10 * SECOND, 1, Charge::Admit);
    assert!(!back.allowed);
    assert_eq!(back.retry_after, Some(Duration::from_secs(11)));
    assert_eq!(back.reset_after, Duration::from_secs(12));
    // Even at the epoch itself.
    let zero = decide(&quota, tat, 0, 1, Charge::Force);
    assert!(!zero.decision.allowed);
}

#[test]
fn extremes_saturate_instead_of_overflowing() {
    let max = Quota::per_minute(u32::MAX, u32::MAX).unwrap();
    let min = Quota::per_minute(1, 1).unwrap();
    let big_burst = Quota::per_minute(1, u32::MAX).unwrap();
    for quota in [max, min, big_burst] {
        for (tat, now) in [
            (None, 0),
            (None, u64::MAX),
            (Some(u64::MAX), 0),
            (Some(u64::MAX), u64::MAX),
            (Some(0), u64::MAX),
        ] {
            for cost in [0, 1, u32::MAX] {
                for mode in [Charge::Admit, Charge::Force] {
                    let v = decide(&quota, tat, now, cost, mode);
                    assert!(v.decision.remaining <= quota.burst());
                    if let Some(new_tat) = v.new_tat {
                        assert!(new_tat >= now);
                    }
                }
            }
        }
    }
    let d = decide(&min, Some(u64::MAX), 0, u32::MAX, Charge::Force).decision;
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
}
