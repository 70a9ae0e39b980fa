use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::{any, prop_assert, proptest};

use super::*;

fn endpoints(n: usize) -> Vec<Arc<Endpoint<String>>> {
    (0..n).map(|i| Endpoint::new(format!("e{i}"))).collect()
}

fn all(_: &String) -> bool {
    true
}

#[test]
fn no_endpoints_no_pick() {
    for strategy in [Strategy::RoundRobin, Strategy::PowerOfTwoChoices] {
        let lb = LoadBalancer::new(strategy);
        assert!(lb.pick(&endpoints(0), all).is_none());
        assert!(
            lb.pick(&endpoints(3), |_| false).is_none(),
            "nothing accepted"
        );
    }
}

#[test]
fn round_robin_takes_each_in_turn() {
    let lb = LoadBalancer::new(Strategy::RoundRobin);
    let eps = endpoints(3);
    let picks: Vec<String> = (0..6)
        .map(|_| lb.pick(&eps, all).unwrap().clone())
        .collect();
    assert_eq!(picks, ["e0", "e1", "e2", "e0", "e1", "e2"]);
}

#[test]
fn round_robin_shares_an_ejected_endpoints_turns_evenly() {
    let lb = LoadBalancer::new(Strategy::RoundRobin);
    let eps = endpoints(3);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..100 {
        let pick = lb.pick(&eps, |v| v != "e1").unwrap();
        *counts.entry(pick.clone()).or_default() += 1;
    }
    assert_eq!(counts.get("e0"), Some(&50));
    assert_eq!(counts.get("e2"), Some(&50));
}

#[test]
fn round_robin_skips_rejected_endpoints() {
    let lb = LoadBalancer::new(Strategy::RoundRobin);
    let eps = endpoints(3);
    for _ in 0..9 {
        let pick = lb.pick(&eps, |v| v != "e1").unwrap();
        assert_ne!(*pick, "e1");
    }
}

#[test]
fn the_guard_tracks_outstanding_calls() {
    let lb = LoadBalancer::new(Strategy::PowerOfTwoChoices);
    let eps = endpoints(1);
    let a = lb.pick(&eps, all).unwrap();
    let b = lb.pick(&eps, all).unwrap();
    assert_eq!(eps[0].in_flight(), 2);
    drop(a);
    assert_eq!(eps[0].in_flight(), 1);
    assert!(Arc::ptr_eq(b.endpoint(), &eps[0]));
    drop(b);
    assert_eq!(eps[0].in_flight(), 0);
}

#[test]
fn p2c_with_two_always_takes_the_less_busy() {
    let lb = LoadBalancer::new(Strategy::PowerOfTwoChoices);
    let eps = endpoints(2);
    let _busy: Vec<_> = (0..3).map(|_| InFlight::start(&eps[0])).collect();
    for _ in 0..100 {
        assert_eq!(*lb.pick(&eps, all).unwrap(), "e1");
    }
}

#[test]
fn p2c_never_picks_the_single_busiest_endpoint() {
    let lb = LoadBalancer::new(Strategy::PowerOfTwoChoices);
    let eps = endpoints(5);
    let _busy: Vec<_> = (0..10).map(|_| InFlight::start(&eps[2])).collect();
    for _ in 0..500 {
        assert_ne!(*lb.pick(&eps, all).unwrap(), "e2");
    }
}

#[test]
fn p2c_spreads_held_calls_evenly() {
    let lb = LoadBalancer::new(Strategy::PowerOfTwoChoices);
    let eps = endpoints(4);
    let held: Vec<_> = (0..400).map(|_| lb.pick(&eps, all).unwrap()).collect();
    for e in &eps {
        // Least-outstanding keeps every endpoint close to the mean (uniformly random picks
        // would stray by ±30 or so; P2C stays within ±3 in almost every run).
        assert!(
            (92..=108).contains(&e.in_flight()),
            "{} has {}",
            e.value(),
            e.in_flight()
        );
    }
    drop(held);
    assert!(eps.iter().all(|e| e.in_flight() == 0));
}

#[test]
fn p2c_uses_every_endpoint_when_idle() {
    let lb = LoadBalancer::new(Strategy::PowerOfTwoChoices);
    let eps = endpoints(3);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..3000 {
        *counts
            .entry(lb.pick(&eps, all).unwrap().clone())
            .or_default() += 1;
    }
    for e in &eps {
        let n = counts.get(e.value()).copied().unwrap_or(0);
        assert!(n > 700, "{} picked only {n} times of 3000", e.value());
    }
}

#[test]
fn p2c_with_one_eligible_takes_it() {
    let lb = LoadBalancer::new(Strategy::PowerOfTwoChoices);
    let eps = endpoints(4);
    for _ in 0..20 {
        assert_eq!(*lb.pick(&eps, |v| v == "e3").unwrap(), "e3");
    }
}

#[test]
fn strategy_parses_from_configuration() {
    assert_eq!(
        "round-robin".parse::<Strategy>().unwrap(),
        Strategy::RoundRobin
    );
    assert_eq!(
        "P2C".parse::<Strategy>().unwrap(),
        Strategy::PowerOfTwoChoices
    );
    let err = "random".parse::<Strategy>().unwrap_err();
    assert!(err.to_string().contains("load_balancer.strategy"));
    assert_eq!(Strategy::default(), Strategy::PowerOfTwoChoices);
}

proptest! {
    /// Whatever is eligible, a pick is always one of the eligible endpoints.
    #[test]
    fn picks_only_eligible_endpoints(mask in proptest::collection::vec(any::<bool>(), 1..12), rr in any::<bool>()) {
        let strategy = if rr { Strategy::RoundRobin } else { Strategy::PowerOfTwoChoices };
        let lb = LoadBalancer::new(strategy);
        let eps = endpoints(mask.len());
        let eligible = |v: &String| {
            let i: usize = v[1..].parse().unwrap();
            mask[i]
        };
        for _ in 0..20 {
            match lb.pick(&eps, eligible) {
                Some(p) => prop_assert!(eligible(&p)),
                None => prop_assert!(!mask.iter().any(|m| *m)),
            }
        }
    }
}
